"""Audit events: the cursor list and the streamed export (NDJSON or CSV)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from compliance.models import CALL_FIELDS, AuditEvent
from governance.api.base import ApiView
from governance.api.pagination import KeysetPaginator, PageQuery, page_of
from governance.events import DECISIONS, EVENT_TYPE, EVENT_TYPE_RULE
from governance.models import Organization
from governance.permissions import Action

EXPORT_CHUNK = 2000

EVENT_FIELDS: tuple[str, ...] = (
    "id",
    "seq",
    "ts",
    "recorded_at",
    "source",
    "type",
    "actor",
    *CALL_FIELDS,
    "data",
    "prev_hash",
    "hash",
)
JSON_FIELDS = frozenset({"actor", "arguments", "client_info", "data"})


# --- shapes ---------------------------------------------------------------------------------


class AuditEventSerializer(serializers.Serializer):
    """One audit event, flat: the call columns beside the envelope's members."""

    id = serializers.CharField()
    seq = serializers.IntegerField()
    ts = serializers.DateTimeField()
    recorded_at = serializers.DateTimeField()
    source = serializers.CharField()
    type = serializers.CharField()
    actor = serializers.DictField()
    server_id = serializers.CharField(allow_null=True)
    server_slug = serializers.CharField(allow_null=True)
    session_id = serializers.CharField(allow_null=True)
    key_id = serializers.CharField(allow_null=True)
    method = serializers.CharField(allow_null=True)
    tool = serializers.CharField(allow_null=True)
    decision = serializers.CharField(allow_null=True)
    rule_id = serializers.CharField(allow_null=True)
    policy_version = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    upstream_ms = serializers.FloatField(allow_null=True)
    upstream_status = serializers.IntegerField(allow_null=True)
    result = serializers.CharField(allow_null=True)
    request_bytes = serializers.IntegerField(allow_null=True)
    response_bytes = serializers.IntegerField(allow_null=True)
    args_digest = serializers.CharField(allow_null=True)
    arguments = serializers.JSONField(allow_null=True)
    client_info = serializers.JSONField(allow_null=True)
    protocol_version = serializers.CharField(allow_null=True)
    data = serializers.DictField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def flat_event(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name in EVENT_FIELDS:
        value = row[name]
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = iso(value)
        out[name] = value
    return out


class AuditFilterFields(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="ts at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="ts before (ISO 8601).")
    server = serializers.UUIDField(required=False, help_text="Server id.")
    tool = serializers.CharField(required=False, max_length=256)
    key = serializers.UUIDField(required=False, help_text="API key id.")
    session = serializers.CharField(required=False, max_length=128, help_text="Session id.")
    decision = serializers.ChoiceField(DECISIONS, required=False)
    type = serializers.CharField(required=False, max_length=100, help_text="Event type.")

    def validate_type(self, value: str) -> str:
        # Any name of the type grammar may be stored (ingestion brings other gateways' types),
        # so the set is open; a value outside the grammar matches nothing ever stored.
        if not EVENT_TYPE.match(value):
            raise serializers.ValidationError(
                f'"{value}" is not an event type: {EVENT_TYPE_RULE}.', code="invalid"
            )
        return value


class AuditFilters(AuditFilterFields, PageQuery):
    pass


class AuditExportFilters(AuditFilterFields):
    format = serializers.ChoiceField(["csv", "ndjson"], default="ndjson")


def audit_events(org: Organization, params: dict[str, Any]) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.filter(org_id=org.id)
    lookups = {
        "since": "ts__gte",
        "until": "ts__lt",
        "server": "server_id",
        "tool": "tool",
        "key": "key_id",
        "session": "session_id",
        "decision": "decision",
        "type": "type",
    }
    for name, lookup in lookups.items():
        if params.get(name) is not None:
            qs = qs.filter(**{lookup: params[name]})
    return qs


# --- events ---------------------------------------------------------------------------------


class AuditEventListView(ApiView):
    access = {"GET": Action.AUDIT_READ}
    query = {"GET": AuditFilters}
    paginator = KeysetPaginator("seq")

    @extend_schema(responses=page_of(AuditEventSerializer), summary="Audit events in seq order")
    def get(self, request: Request) -> Response:
        assert self.paginator is not None
        page = self.paginator.paginate(
            audit_events(self.org, self.params).values(*EVENT_FIELDS), self.params
        )
        return Response(
            {"results": [flat_event(row) for row in page.items], "next_cursor": page.next_cursor}
        )


def ndjson_chunks(qs: QuerySet[AuditEvent]) -> Iterator[bytes]:
    lines: list[str] = []
    for values in qs.values_list(*EVENT_FIELDS).iterator(chunk_size=EXPORT_CHUNK):
        row = flat_event(dict(zip(EVENT_FIELDS, values, strict=True)))
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        if len(lines) >= EXPORT_CHUNK:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


def _csv_cell(name: str, value: Any) -> Any:
    if value is None:
        return ""
    if name in JSON_FIELDS:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        # Spreadsheets run cells that start like a formula (OWASP "CSV injection"); tool names
        # and ids come from agents, so such cells are quoted with a leading apostrophe.
        return "'" + value
    return value


def csv_chunks(qs: QuerySet[AuditEvent]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EVENT_FIELDS)
    rows = qs.values_list(*EVENT_FIELDS).iterator(chunk_size=EXPORT_CHUNK)
    for count, values in enumerate(rows, start=1):
        row = flat_event(dict(zip(EVENT_FIELDS, values, strict=True)))
        writer.writerow([_csv_cell(name, row[name]) for name in EVENT_FIELDS])
        if count % EXPORT_CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


async def stream_in_thread(make: Callable[[], Iterator[bytes]]) -> AsyncIterator[bytes]:
    """Serve a database-backed generator under ASGI one chunk at a time.

    Django consumes a synchronous iterator whole before sending under ASGI; this pulls each
    chunk in the request's database thread instead, so memory stays at one chunk.
    """
    iterator = make()

    def pull() -> bytes | None:
        return next(iterator, None)

    while True:
        chunk = await sync_to_async(pull, thread_sensitive=True)()
        if chunk is None:
            return
        yield chunk


class AuditEventExportView(ApiView):
    access = {"GET": Action.AUDIT_READ}
    query = {"GET": AuditExportFilters}

    @extend_schema(
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="One JSON audit event per line, in seq order."
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="A header row, then one event per row."
            ),
        },
        summary="Export audit events (streamed, csv or ndjson)",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        qs = audit_events(self.org, self.params).order_by("seq")
        kind = self.params["format"]
        make = (lambda: csv_chunks(qs)) if kind == "csv" else (lambda: ndjson_chunks(qs))
        content: Any = (
            stream_in_thread(make) if isinstance(request._request, ASGIRequest) else make()
        )
        content_type = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
        response = StreamingHttpResponse(content, content_type=content_type)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"audit-{self.org.slug}-{stamp}.{'csv' if kind == 'csv' else 'ndjson'}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        return response
