"""Anomalies."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from governance.models import AgentSession, Anomaly, Organization
from governance.selectors.ids import MISSES, positive_int


def anomalies_for_org(*, org: Organization) -> QuerySet[Anomaly]:
    return Anomaly.objects.filter(org=org).select_related("resolved_by")


def anomaly_get_for_org(*, org: Organization, anomaly_id: Any) -> Anomaly:
    try:
        return anomalies_for_org(org=org).get(pk=positive_int(anomaly_id))
    except (Anomaly.DoesNotExist, *MISSES):
        raise Http404("no such anomaly in this organisation") from None


def anomalies_filtered_for_org(*, org: Organization, status: str, kind: str) -> QuerySet[Anomaly]:
    """The console's anomaly list: newest first, with the session and who resolved it."""
    qs = Anomaly.objects.filter(org=org).select_related("session", "resolved_by")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-created_at", "-id")


def anomaly_kinds_for_org(*, org: Organization) -> list[str]:
    """Every kind of anomaly the organisation has, for the list's filter."""
    return list(
        Anomaly.objects.filter(org=org).order_by("kind").values_list("kind", flat=True).distinct()
    )


def anomalies_for_session(*, org: Organization, session: AgentSession) -> QuerySet[Anomaly]:
    return Anomaly.objects.filter(org=org, session=session).order_by("-created_at")
