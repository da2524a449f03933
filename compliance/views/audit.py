"""The audit log in the console: the filtered list (newest first, cursor paging by seq), one
record with the chain status of its range, and the filtered set exported as CSV or NDJSON.

Filters are validated by the REST API's own serializer (`compliance.api.AuditFilterFields`), so a
value the API answers 400 to is a form error here, never a 500; the page adds `source` (ingested
records included) and a free-text search the API does not have. The export streams through the
API's exporter: its chunk writers and its ASGI streaming.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_safe
from rest_framework import serializers

from compliance.api.events import (
    AuditFilterFields,
    audit_events,
    csv_chunks,
    ndjson_chunks,
    stream_in_thread,
)
from compliance.audit.range import verify_range
from compliance.models import AuditEvent
from governance.models import ApiKey, IngestProvider, McpServer, Organization
from governance.permissions import Action
from governance.selectors.servers import servers_for_org
from governance.views.base import Console, console_render, org_required

PAGE_SIZE = 50
# The free-text search is a substring match over the tool and the arguments' JSON text, which no
# B-tree index serves; instead of a trigram index (which would cost the audit writer a GIN
# update per row on the hot append path), each request searches at most this many consecutive
# records, newest first from the newest one the other filters allow (found through their
# indexes), and the page offers to search the next older stretch. The work per request is
# bounded whatever the log's size, on PostgreSQL and SQLite alike: a 20,000-record window
# answers in 32 ms median at 200,000 records (bench/audit_page.py), against 23 ms unsearched.
SEARCH_WINDOW = 20_000
MAX_SEQ = 2**63 - 1  # seq is a bigint; a larger number in a URL would be a database error
SOURCES: list[tuple[str, str]] = [
    ("proxy", "Proxy (agent calls)"),
    ("console", "Console"),
    ("api", "REST API"),
    ("system", "System"),
    ("ingest", "Ingested (any gateway)"),
    *[(f"ingest:{value}", f"Ingested: {label}") for value, label in IngestProvider.choices],
]
LIST_FIELDS = (
    "seq",
    "ts",
    "source",
    "type",
    "actor",
    "server_id",
    "server_slug",
    "session_id",
    "key_id",
    "tool",
    "decision",
    "latency_ms",
    "result",
    "arguments",
)


class AuditPageFilters(AuditFilterFields):
    """The API's filters, plus what only the page offers."""

    source = serializers.ChoiceField([value for value, _ in SOURCES], required=False)
    q = serializers.CharField(required=False, max_length=200)
    # What the dashboard's figures are keyed by (compliance/observe): a server by its slug, as
    # the rollups hold it, and the rule that decided.
    server_slug = serializers.SlugField(required=False, max_length=64)
    rule = serializers.CharField(required=False, max_length=128)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and until <= since:
            raise serializers.ValidationError({"until": "The end must be after the start."})
        return attrs


class AuditListFilters(AuditPageFilters):
    before = serializers.IntegerField(required=False, min_value=1, max_value=MAX_SEQ)


class AuditExportForm(AuditPageFilters):
    format = serializers.ChoiceField(["csv", "ndjson"], default="csv")


FILTER_NAMES = tuple(AuditPageFilters().fields)


def parse_filters(
    query: QueryDict, serializer_class: type[serializers.Serializer]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(validated filters, errors by field). Blank fields are left out: an empty box of the
    form means "any", where the API would refuse an empty date or id."""
    data = {}
    for name in serializer_class().fields:
        value = query.get(name, "").strip()
        if value:
            data[name] = value
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data), {}
    errors: dict[str, list[str]] = {}
    for field, messages in serializer.errors.items():
        items = messages if isinstance(messages, list) else [messages]
        errors[str(field)] = [str(message) for message in items]
    return {}, errors


# --- reads (tenant-scoped: every query starts from the organisation's id) -----------------------


def audit_events_for_org(*, org: Organization, params: dict[str, Any]) -> QuerySet[AuditEvent]:
    """The API's filtered events of one organisation, with the page's source filter."""
    qs = audit_events(org, params)
    if params.get("server_slug"):
        qs = qs.filter(server_slug=params["server_slug"])
    if params.get("rule"):
        qs = qs.filter(rule_id=params["rule"])
    source = params.get("source")
    if source == "ingest":
        qs = qs.filter(source__startswith="ingest:")
    elif source:
        qs = qs.filter(source=source)
    return qs


def _text_search(qs: QuerySet[AuditEvent], text: str) -> QuerySet[AuditEvent]:
    # The arguments as recorded (already masked by the proxy), as JSON text: PostgreSQL's jsonb
    # text form, SQLite's stored text.
    return qs.alias(arguments_text=Cast("arguments", TextField())).filter(
        Q(tool__icontains=text) | Q(arguments_text__icontains=text)
    )


@dataclass(frozen=True)
class Listing:
    rows: list[dict[str, Any]]
    next_before: int | None
    searched: tuple[int, int] | None = None  # the seqs the text search covered


def audit_page(*, org: Organization, params: dict[str, Any]) -> Listing:
    """One page, newest first, of records with seq below `params["before"]`: one query, or two
    with a text search (the newest record the other filters allow, then the window below it)."""
    size = PAGE_SIZE
    qs = audit_events_for_org(org=org, params=params)
    if params.get("before"):
        qs = qs.filter(seq__lt=params["before"])
    text = params.get("q")
    if not text:
        rows = list(qs.order_by("-seq").values(*LIST_FIELDS)[: size + 1])
        more = len(rows) > size
        return Listing(rows[:size], rows[size - 1]["seq"] if more else None)
    top = qs.order_by("-seq").values_list("seq", flat=True).first()
    if top is None:
        return Listing([], None)
    low = max(1, top - SEARCH_WINDOW + 1)
    window = _text_search(qs.filter(seq__gte=low, seq__lte=top), text)
    rows = list(window.order_by("-seq").values(*LIST_FIELDS)[: size + 1])
    if len(rows) > size:
        last = rows[size - 1]["seq"]
        return Listing(rows[:size], last, (last, top))
    return Listing(rows, low if low > 1 else None, (low, top))


def _iso_input(value: datetime | None) -> str:
    """A datetime as a `datetime-local` input's value, in UTC (the console's time zone)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _query(values: dict[str, str], **extra: Any) -> str:
    items = {k: v for k, v in values.items() if v}
    items.update({k: v for k, v in extra.items() if v is not None})
    return urlencode(items)


def _row_view(row: dict[str, Any], keys: dict[str, ApiKey]) -> dict[str, Any]:
    key = keys.get(str(row["key_id"])) if row["key_id"] else None
    actor = row["actor"] if isinstance(row["actor"], dict) else {}
    args = row["arguments"]
    return {
        **row,
        "key": key,
        "agent": key.name if key else (actor.get("label") or actor.get("kind") or ""),
        "args_preview": "" if args in (None, {}, []) else _preview(args),
    }


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= 90 else text[:89] + "…"


# --- pages -------------------------------------------------------------------------------------


def _choices(console: Console) -> tuple[list[McpServer], list[ApiKey]]:
    servers = list(servers_for_org(org=console.org))
    keys = list(ApiKey.objects.filter(org=console.org).order_by("name", "id"))
    return servers, keys


def _render_list(
    request: HttpRequest,
    console: Console,
    params: dict[str, Any],
    errors: dict[str, list[str]],
) -> HttpResponse:
    servers, keys = _choices(console)
    raw = {name: request.GET.get(name, "").strip() for name in FILTER_NAMES}
    if not errors:
        raw["since"] = _iso_input(params.get("since"))
        raw["until"] = _iso_input(params.get("until"))
    listing = Listing([], None) if errors else audit_page(org=console.org, params=params)
    by_id = {str(key.id): key for key in keys}
    filtered = any(raw.values())
    return console_render(
        request,
        console,
        "console/audit/list.html",
        {
            "rows": [_row_view(row, by_id) for row in listing.rows],
            "listing": listing,
            "values": raw,
            "errors": errors,
            "filtered": filtered,
            "paged": bool(params.get("before")),
            "servers": servers,
            "keys": keys,
            "sources": SOURCES,
            "decisions": AuditFilterFields().fields["decision"].choices,
            "next_query": _query(raw, before=listing.next_before) if listing.next_before else "",
            "export_query": _query(raw),
            # The text search stopped at its window's end, not at a full page.
            "search_more": bool(listing.searched and len(listing.rows) < PAGE_SIZE),
        },
        status=400 if errors else 200,
        no_store=True,
    )


@require_safe
@org_required(Action.AUDIT_READ)
def audit_log(request: HttpRequest, console: Console) -> HttpResponse:
    params, errors = parse_filters(request.GET, AuditListFilters)
    return _render_list(request, console, params, errors)


@require_safe
@org_required(Action.AUDIT_READ)
def audit_export(request: HttpRequest, console: Console) -> HttpResponse:
    """The whole filtered set (every page, not only the shown one), oldest first, streamed."""
    params, errors = parse_filters(request.GET, AuditExportForm)
    if errors:
        return _render_list(request, console, params, errors)
    qs = audit_events_for_org(org=console.org, params=params)
    if params.get("q"):
        qs = _text_search(qs, params["q"])
    qs = qs.order_by("seq")
    kind = params["format"]
    make = (lambda: csv_chunks(qs)) if kind == "csv" else (lambda: ndjson_chunks(qs))
    content: Any = stream_in_thread(make) if isinstance(request, ASGIRequest) else make()
    response = StreamingHttpResponse(
        content, content_type="text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = (
        f'attachment; filename="audit-{console.org.slug}-{stamp}.{kind}"'
    )
    response["Cache-Control"] = "no-store"
    return response


def _event_get(console: Console, **lookup: Any) -> AuditEvent:
    event = AuditEvent.objects.filter(org_id=console.org.id, **lookup).first()
    if event is None:
        raise Http404("no such audit record in this organisation")
    return event


@require_safe
@org_required(Action.AUDIT_READ)
def audit_detail(request: HttpRequest, console: Console, seq: int) -> HttpResponse:
    if seq > MAX_SEQ:
        raise Http404("no such audit record in this organisation")
    event = _event_get(console, seq=seq)
    key = ApiKey.objects.filter(org=console.org, pk=event.key_id).first() if event.key_id else None
    chain = verify_range(console.org.id, seq)
    session_url = None
    if event.session_id:
        # Ingested records carry other gateways' session ids, which may not fit the route.
        with contextlib.suppress(NoReverseMatch):
            session_url = reverse("console:session_detail", args=[event.session_id])
    return console_render(
        request,
        console,
        "console/audit/detail.html",
        {
            "event": event,
            "key": key,
            "chain": chain,
            "actor": event.actor if isinstance(event.actor, dict) else {},
            "session_url": session_url,
            "arguments_json": _pretty(event.arguments),
            "data_json": _pretty(event.data),
            # Known to exist only inside the checked range; at its end the log lists newer ones.
            "newer": seq + 1 if seq < chain.last_seq else None,
        },
        no_store=True,
    )


@require_safe
@org_required(Action.AUDIT_READ)
def audit_event(request: HttpRequest, console: Console, event_id: Any) -> HttpResponse:
    seq = _event_get(console, id=event_id).seq
    return redirect("console:audit_detail", seq=seq)
