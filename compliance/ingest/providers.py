"""Payload shapes per provider, mapped to audit items (source `ingest:<provider>`). Pure.

Item types: `tool_call` (a tool was executed; `tool` names it), `llm_call` (a model request),
`agent_run`/`agent_step` (agent spans), `mcp_request`, or, for `generic`, the sender's own type.
Only metadata is kept (model, token usage, status, latency, ids, the names of tools a model asked
for), never prompt or completion text: the audit log is no place for conversation content.

- generic: igris' own schema, `{"events": [{"type", "ts", "server"?, "tool"?, "decision"?,
  "session_id"?, "actor"?, "data"?, "id"?, "method"?, "result"?, "latency_ms"?}]}`; `ts` is
  ISO 8601 with a time zone; `data` is kept as given under `data.attributes` (never lifted into
  the audit columns); unknown top-level fields are refused per item.
- otlp: see compliance/ingest/otlp.py.
- portkey: log objects as Portkey's logs export / Logs API give them (`id`, `trace_id`,
  `created_at`, `ai_org`, `ai_model`, `request`, `response`, `response_status_code`,
  `response_time`, `req_units`, `res_units`, `cost`, `metadata`), as a JSON array, NDJSON or
  `{"data": [...]}`; a custom log (`{"request", "response", "metadata"}`) works too.
- helicone: the webhook body (`request_id`, `user_id`, `model`, `request_body`, `response_body`,
  `metadata.{latencyMs,promptTokens,completionTokens,totalTokens,cost}`, `properties`), one
  object or a list; a Helicone custom tool log (`request_body._type == "tool"`) is a tool_call.
- datadog: the LLM Observability span intake, `{"data": {"type": "span", "attributes":
  {"ml_app", "session_id"?, "tags", "spans": [{name, span_id, trace_id, parent_id, start_ns,
  duration, status, meta: {kind, model_name, model_provider, error}, metrics, session_id}]}}}`;
  span kind `tool` -> tool_call, `llm`/`embedding` -> llm_call, `agent` -> agent_run, others ->
  agent_step.
- cloudflare: AI Gateway Logpush (`ai_gateway_events`: NDJSON, usually gzip) with its plaintext
  fields (`Datetime`/`Timestamp`, `Gateway`, `Provider`, `Model`, `Endpoint`, `StatusCode`,
  `Cached`, `RateLimited`, `Step`, ...; the encrypted bodies and metadata are not read), or the
  AI Gateway logs API's objects (`id`, `created_at`, `provider`, `model`, `status_code`, ...).
  StatusCode 424 (a guardrail or DLP block) is decision `deny`; rate limited is `rate_limited`.
- cloudwatch: a CloudWatch Logs subscription payload, `{"awslogs": {"data": base64(gzip(json))}}`
  as a Lambda receives it, or the decoded `{"messageType": "DATA_MESSAGE", "logGroup",
  "logStream", "owner", "logEvents": [{"id", "timestamp", "message"}]}`. Each message must be
  JSON: a Bedrock model invocation log (`schemaType: ModelInvocationLog`) -> llm_call, or an
  event in the generic schema. `CONTROL_MESSAGE` is acknowledged and stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compliance.ingest import MAX_ITEMS, PROVIDERS, gateways, otlp
from compliance.ingest.gateways import as_dict, external_actor, requested_tools
from compliance.ingest.items import (
    Batch,
    IngestItem,
    Mapped,
    PayloadError,
    Rejected,
    b64_gunzip,
    check,
    compact,
    epoch_time,
    integer,
    iso_time,
    json_document,
    load_json,
    number,
    text,
)


@dataclass(frozen=True)
class Provider:
    name: str
    # Body -> raw records (None: a protocol no-op such as a control message).
    records: Callable[[bytes], list[Any] | None]
    # One raw record -> an item or a rejection (`now`: for formats without a timestamp).
    map: Callable[[Any, datetime], Mapped]
    # What kind of record each is, for formats that mix kinds (OTLP spans and log records).
    kind: Callable[[Any], str] | None = None


def parse(provider: str, body: bytes, *, now: datetime) -> Batch:
    """Map a request body to items, in order. Raises PayloadError for an unreadable body."""
    spec = REGISTRY[provider]
    raw = spec.records(body)
    if raw is None:
        return Batch([], control=True)
    if len(raw) > MAX_ITEMS:
        raise PayloadError(
            413, "too_many_items", f"{len(raw)} items; a request holds at most {MAX_ITEMS}."
        )
    items: list[Mapped] = []
    for record in raw:
        try:
            mapped = spec.map(record, now)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError):
            mapped = Rejected(f"the record does not have the documented {provider} shape")
        items.append(check(mapped, now=now))
    return Batch(items, kinds=[spec.kind(record) for record in raw] if spec.kind else [])


# --- generic ------------------------------------------------------------------------------------

GENERIC_FIELDS = frozenset(
    {
        "type",
        "ts",
        "server",
        "tool",
        "decision",
        "session_id",
        "actor",
        "data",
        "id",
        "method",
        "result",
        "latency_ms",
    }
)
_GENERIC_COLUMNS = (
    ("server", "server_slug"),
    ("tool", "tool"),
    ("decision", "decision"),
    ("session_id", "session_id"),
    ("method", "method"),
    ("result", "result"),
)


def _generic_records(body: bytes) -> list[Any] | None:
    document = load_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise PayloadError(400, "malformed_payload", 'Expected {"events": [...]}.')
    return list(document["events"])


def map_generic(record: Any, now: datetime) -> Mapped:
    if not isinstance(record, dict):
        return Rejected("an event must be a JSON object")
    unknown = sorted(str(k) for k in set(record) - GENERIC_FIELDS)
    if unknown:
        return Rejected(f"unknown field(s): {', '.join(unknown)[:200]}")
    ts = iso_time(record.get("ts"))
    if ts is None:
        return Rejected("ts must be an ISO 8601 timestamp with a time zone")
    data: dict[str, Any] = {}
    for given, column in _GENERIC_COLUMNS:
        value = record.get(given)
        if value is not None:
            if not isinstance(value, str):
                return Rejected(f"{given} must be a string")
            data[column] = value
    if record.get("latency_ms") is not None:
        latency = number(record["latency_ms"])
        if latency is None or isinstance(record["latency_ms"], str):
            return Rejected("latency_ms must be a number")
        data["latency_ms"] = latency
    attributes = record.get("data")
    if attributes is not None:
        if not isinstance(attributes, dict):
            return Rejected("data must be a JSON object")
        data["attributes"] = attributes
    if record.get("type") == "tool_call":
        data.setdefault("method", "tools/call")
    external = record.get("id")
    if external is not None and (not isinstance(external, str) or not 0 < len(external) <= 128):
        return Rejected("id must be a string of 1-128 characters")
    actor = record.get("actor")
    if actor is not None and external_actor(actor) is None:
        return Rejected("actor must be a name or an object with an id or a label")
    type_ = record.get("type")
    return IngestItem(
        type=type_ if isinstance(type_, str) else "",
        ts=ts,
        data=data,
        actor=external_actor(actor),
        external_id=external,
    )


# --- cloudwatch ---------------------------------------------------------------------------------


def _cloudwatch_records(body: bytes) -> list[Any] | None:
    document = load_json(body)
    if isinstance(document, dict) and isinstance(document.get("awslogs"), dict):
        document = load_json(b64_gunzip(document["awslogs"].get("data"), what="awslogs.data"))
    if not isinstance(document, dict) or "messageType" not in document:
        raise PayloadError(
            400,
            "malformed_payload",
            'Expected a CloudWatch Logs subscription payload: {"awslogs": {"data": ...}} or '
            "its decoded JSON.",
        )
    if document["messageType"] == "CONTROL_MESSAGE":
        return None  # CloudWatch checks that the destination is reachable
    if document["messageType"] != "DATA_MESSAGE" or not isinstance(document.get("logEvents"), list):
        raise PayloadError(400, "malformed_payload", "Expected a DATA_MESSAGE with logEvents.")
    context = {
        "log_group": text(document.get("logGroup"), 512),
        "log_stream": text(document.get("logStream"), 512),
        "account": text(document.get("owner"), 32),
    }
    return [(context, event) for event in document["logEvents"]]


def map_cloudwatch(record: Any, now: datetime) -> Mapped:
    context, event = record
    if not isinstance(event, dict):
        return Rejected("a log event must be a JSON object")
    message = json_document(event.get("message"))
    if not isinstance(message, dict):
        return Rejected("the message is not a JSON object")
    event_id = text(event.get("id"), 128)
    if message.get("schemaType") == "ModelInvocationLog":
        mapped = _bedrock(message, event)
    elif "type" in message and "ts" in message:
        mapped = map_generic(message, now)
    else:
        return Rejected("the message is neither a Bedrock model invocation log nor an igris event")
    if isinstance(mapped, Rejected):
        return mapped
    return IngestItem(
        type=mapped.type,
        ts=mapped.ts,
        data={**mapped.data, "cloudwatch": compact(context)},
        actor=mapped.actor,
        external_id=mapped.external_id or event_id,
    )


def _bedrock(message: dict[str, Any], event: dict[str, Any]) -> Mapped:
    """Amazon Bedrock model invocation logging, schemaVersion 1.0."""
    ts = iso_time(message.get("timestamp")) or epoch_time(event.get("timestamp"), "ms")
    if ts is None:
        return Rejected("the invocation log has no timestamp")
    request, response = as_dict(message.get("input")), as_dict(message.get("output"))
    error = text(message.get("errorCode"))
    data = compact(
        {
            "result": "error" if error else "ok",
            "operation": text(message.get("operation"), 64),
            "model": text(message.get("modelId")),
            "provider": "aws.bedrock",
            "region": text(message.get("region"), 32),
            "usage": compact(
                {
                    "input_tokens": integer(request.get("inputTokenCount")),
                    "output_tokens": integer(response.get("outputTokenCount")),
                }
            ),
            "tool_calls": requested_tools(response.get("outputBodyJson")),
            "error_type": error,
        }
    )
    identity = text(as_dict(message.get("identity")).get("arn"), 200)
    return IngestItem(
        type="llm_call",
        ts=ts,
        data=data,
        actor={"kind": "agent", "id": identity, "label": None} if identity else None,
        external_id=text(message.get("requestId"), 128),
    )


REGISTRY: dict[str, Provider] = {
    "generic": Provider("generic", _generic_records, map_generic),
    "otlp": Provider("otlp", otlp.records, otlp.map_record, kind=lambda record: record[0]),
    "portkey": Provider("portkey", gateways.records_in, gateways.map_portkey),
    "helicone": Provider("helicone", gateways.records_in, gateways.map_helicone),
    "datadog": Provider("datadog", gateways.datadog_records, gateways.map_datadog),
    "cloudflare": Provider("cloudflare", gateways.records_in, gateways.map_cloudflare),
    "cloudwatch": Provider("cloudwatch", _cloudwatch_records, map_cloudwatch),
}
assert tuple(REGISTRY) == PROVIDERS
