"""Anomalies: what the detectors raised (rate spikes, destructive patterns, tool drift, policy
alerts), filtered by status and kind; acknowledge and resolve with a note."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from governance.models import AnomalyStatus
from governance.permissions import Action
from governance.selectors.anomalies import (
    anomalies_filtered_for_org,
    anomaly_get_for_org,
    anomaly_kinds_for_org,
)
from governance.services.anomalies import anomaly_acknowledge, anomaly_resolve
from governance.services.base import ServiceError
from governance.views.base import Console, console_render, org_required

ANOMALIES_PER_PAGE = 50
DETAIL_SUMMARY_CHARS = 140


def detail_summary(detail: Any) -> str:
    """A one-line reading of the detector's detail document: `key: value · key: value`, keys
    sorted (jsonb does not keep the order they were written in)."""
    if not isinstance(detail, dict) or not detail:
        return ""
    parts = []
    for key, value in sorted(detail.items()):
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}: {shown}")
    text = " · ".join(parts)
    return text if len(text) <= DETAIL_SUMMARY_CHARS else text[: DETAIL_SUMMARY_CHARS - 1] + "…"


@org_required(Action.ANOMALIES_VIEW)
def anomalies(request: HttpRequest, console: Console) -> HttpResponse:
    statuses = dict(AnomalyStatus.choices)
    status = request.GET.get("status", "")
    status = status if status in statuses else ""
    kind = request.GET.get("kind", "").strip()[:40]
    page = Paginator(
        anomalies_filtered_for_org(org=console.org, status=status, kind=kind), ANOMALIES_PER_PAGE
    ).get_page(request.GET.get("page"))
    rows = [
        {"anomaly": a, "summary": detail_summary(a.detail), "detail_json": _pretty(a.detail)}
        for a in page.object_list
    ]
    kinds = anomaly_kinds_for_org(org=console.org)
    if kind and kind not in kinds:
        kinds.append(kind)
    query = request.GET.copy()
    query.pop("page", None)
    return console_render(
        request,
        console,
        "console/anomalies/list.html",
        {
            "page": page,
            "rows": rows,
            "status": status,
            "kind": kind,
            "statuses": AnomalyStatus.choices,
            "kinds": kinds,
            "filtered": bool(status or kind),
            "query": query.urlencode(),
            "here": request.get_full_path(),
        },
    )


def _pretty(detail: Any) -> str:
    return json.dumps(detail, indent=2, ensure_ascii=False, sort_keys=True) if detail else ""


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("console:anomalies")


@require_POST
@org_required(Action.ANOMALIES_MANAGE)
def anomaly_acknowledge_view(
    request: HttpRequest, console: Console, anomaly_id: int
) -> HttpResponse:
    anomaly = anomaly_get_for_org(org=console.org, anomaly_id=anomaly_id)
    try:
        anomaly_acknowledge(org=console.org, actor=console.user, anomaly=anomaly)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Acknowledged the {anomaly.kind} anomaly.")
    return _back(request)


@require_POST
@org_required(Action.ANOMALIES_MANAGE)
def anomaly_resolve_view(request: HttpRequest, console: Console, anomaly_id: int) -> HttpResponse:
    anomaly = anomaly_get_for_org(org=console.org, anomaly_id=anomaly_id)
    try:
        anomaly_resolve(
            org=console.org,
            actor=console.user,
            anomaly=anomaly,
            note=request.POST.get("note", ""),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Resolved the {anomaly.kind} anomaly.")
    return _back(request)
