"""Payload shapes per provider, mapped to audit items (source `ingest:<provider>`). Pure.

Item types: `tool_call` (a tool was executed; `tool` names it), `llm_call` (a model request),
`agent_run`/`agent_step` (agent spans), `mcp_request`, or, for `generic`, the sender's own type.
Only metadata is kept (model, token usage, status, latency, ids, the names of tools a model asked
for), never prompt or completion text: the audit log is no place for conversation content.

- generic: igris' own schema, `{"events": [{"type", "ts", "server"?, "tool"?, "decision"?,
  "session_id"?, "actor"?, "data"?, "id"?, "method"?, "result"?, "latency_ms"?}]}`; `ts` is
  ISO 8601 with a time zone; `data` is kept as given under `data.attributes` (never lifted into
  the audit columns); unknown top-level fields are refused per item.
- otlp: see governance/ingest/otlp.py.
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

from governance.ingest import MAX_ITEMS, PROVIDERS, otlp
from governance.ingest.items import (
    Batch,
    IngestItem,
    Mapped,
    PayloadError,
    Rejected,
    any_time,
    b64_gunzip,
    check,
    compact,
    epoch_time,
    integer,
    iso_time,
    json_document,
    load_json,
    load_json_lines,
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
    return Batch(items)


# --- shared pieces ------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if record.get(name) is not None:
            return record[name]
    return None


def external_actor(value: Any) -> dict[str, Any] | None:
    """Who acted, as the outside system knows them: always kind `agent` (not an igris user)."""
    if isinstance(value, str):
        label = text(value)
        return {"kind": "agent", "id": None, "label": label} if label else None
    if isinstance(value, dict):
        actor = {"kind": "agent", "id": text(value.get("id")), "label": text(value.get("label"))}
        return actor if actor["id"] or actor["label"] else None
    return None


def requested_tools(body: Any) -> list[str] | None:
    """Names of the tools a model asked to call, from an OpenAI (chat completions or responses),
    Anthropic (messages) or Bedrock Converse response body."""
    body = json_document(body)
    if not isinstance(body, dict):
        return None
    names: list[str] = []

    def add(name: Any) -> None:
        value = text(name, 256)
        if value and value not in names:
            names.append(value)

    for choice in body.get("choices") if isinstance(body.get("choices"), list) else []:
        message = _dict(_dict(choice).get("message") or _dict(choice).get("delta"))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            add(_dict(_dict(call).get("function")).get("name"))
    for block in body.get("content") if isinstance(body.get("content"), list) else []:
        if _dict(block).get("type") == "tool_use":
            add(_dict(block).get("name"))
    output = body.get("output")
    for item in output if isinstance(output, list) else []:
        if _dict(item).get("type") == "function_call":
            add(_dict(item).get("name"))
    content = _dict(_dict(output).get("message")).get("content")
    for block in content if isinstance(content, list) else []:
        add(_dict(_dict(block).get("toolUse")).get("name"))
    return names[:50] or None


def _usage(body: Any) -> dict[str, int]:
    usage = _dict(_dict(json_document(body)).get("usage"))
    return compact(
        {
            "input_tokens": integer(_first(usage, "prompt_tokens", "input_tokens")),
            "output_tokens": integer(_first(usage, "completion_tokens", "output_tokens")),
        }
    )


def _plain(values: Any, limit: int = 20) -> dict[str, Any] | None:
    """Scalar entries of a caller-defined mapping (metadata, properties), bounded."""
    mapping = _dict(json_document(values))
    kept = {
        str(k)[:100]: (v[:500] if isinstance(v, str) else v)
        for k, v in list(mapping.items())[:limit]
        if isinstance(v, str | int | float | bool)
    }
    return kept or None


def _result(status: int | None, success: Any = None) -> str | None:
    if success is True or (status is not None and 200 <= status < 400):
        return "ok"
    if success is False or status is not None:
        return "error"
    return None


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


# --- portkey ------------------------------------------------------------------------------------


def _records_in(body: bytes) -> list[Any] | None:
    """A JSON array, NDJSON, one object, or `{"data": [...]}` (list APIs)."""
    records = load_json_lines(body)
    if len(records) == 1 and isinstance(records[0], dict) and isinstance(
        records[0].get("data"), list
    ):
        return list(records[0]["data"])
    return records


def map_portkey(record: Any, now: datetime) -> Mapped:
    if not isinstance(record, dict):
        return Rejected("a log must be a JSON object")
    request = _dict(json_document(record.get("request")))
    response = _dict(json_document(record.get("response")))
    request_body = _dict(json_document(request.get("body")))
    response_body = json_document(response.get("body"))
    metadata = _dict(json_document(record.get("metadata") or request.get("metadata")))
    given_ts = _first(record, "created_at", "time_of_generation")
    ts = any_time(given_ts) if given_ts is not None else now
    if ts is None:
        return Rejected("created_at is not a timestamp")
    status = integer(_first(record, "response_status_code", "status_code")) or integer(
        response.get("status")
    )
    usage = compact(
        {
            "input_tokens": integer(_first(record, "req_units", "prompt_tokens")),
            "output_tokens": integer(_first(record, "res_units", "completion_tokens")),
        }
    ) or _usage(response_body)
    latency = number(_first(record, "response_time")) or number(response.get("response_time"))
    data = compact(
        {
            "session_id": text(
                metadata.get("session_id") or metadata.get("_session") or record.get("trace_id"),
                128,
            ),
            "upstream_status": status,
            "latency_ms": latency,
            "result": _result(status, record.get("is_success")),
            "model": text(_first(record, "ai_model", "model") or request_body.get("model")),
            "provider": text(_first(record, "ai_org", "ai_provider", "provider")),
            "usage": usage,
            "cost": number(record.get("cost")),
            "tool_calls": requested_tools(response_body),
            "trace_id": text(record.get("trace_id")),
            "span_id": text(record.get("span_id")),
            "request_url": text(_first(record, "request_url") or request.get("url"), 500),
            "metadata": _plain({k: v for k, v in metadata.items() if k != "_user"}),
        }
    )
    user = text(metadata.get("_user"))
    return IngestItem(
        type="llm_call",
        ts=ts,
        data=data,
        actor={"kind": "agent", "id": user, "label": None} if user else None,
        external_id=text(record.get("id"), 128),
    )


# --- helicone -----------------------------------------------------------------------------------


def map_helicone(record: Any, now: datetime) -> Mapped:
    if not isinstance(record, dict):
        return Rejected("a webhook event must be a JSON object")
    request_body = _dict(json_document(record.get("request_body")))
    response_body = json_document(record.get("response_body"))
    metadata = _dict(record.get("metadata"))
    properties = _dict(record.get("properties"))
    given_ts = _first(record, "created_at", "request_created_at")
    # Webhooks are sent as the request completes and may carry no time: receipt time then.
    ts = any_time(given_ts) if given_ts is not None else now
    if ts is None:
        return Rejected("created_at is not a timestamp")
    is_tool = request_body.get("_type") == "tool"
    status = integer(_first(record, "status", "response_status")) or integer(
        _dict(response_body).get("status")
    )
    data = compact(
        {
            "tool": text(request_body.get("toolName"), 256) if is_tool else None,
            "method": "tools/call" if is_tool else None,
            "session_id": text(
                properties.get("Helicone-Session-Id") or properties.get("helicone-session-id"),
                128,
            ),
            "upstream_status": status,
            "latency_ms": number(metadata.get("latencyMs")),
            "result": _result(status),
            "model": None if is_tool else text(record.get("model") or request_body.get("model")),
            "provider": text(record.get("provider")),
            "usage": compact(
                {
                    "input_tokens": integer(metadata.get("promptTokens")),
                    "output_tokens": integer(metadata.get("completionTokens")),
                    "total_tokens": integer(metadata.get("totalTokens")),
                }
            )
            or _usage(response_body),
            "cost": number(metadata.get("cost")),
            "tool_calls": None if is_tool else requested_tools(response_body),
            "properties": _plain(properties),
        }
    )
    user = text(record.get("user_id"))
    return IngestItem(
        type="tool_call" if is_tool else "llm_call",
        ts=ts,
        data=data,
        actor={"kind": "agent", "id": user, "label": None} if user else None,
        external_id=text(record.get("request_id"), 128),
    )


# --- datadog ------------------------------------------------------------------------------------

DATADOG_KINDS = {
    "tool": "tool_call",
    "llm": "llm_call",
    "embedding": "llm_call",
    "agent": "agent_run",
}


def _datadog_records(body: bytes) -> list[Any] | None:
    document = load_json(body)
    parts = document.get("data") if isinstance(document, dict) else None
    parts = [parts] if isinstance(parts, dict) else parts
    if not isinstance(parts, list) or not parts:
        raise PayloadError(
            400,
            "malformed_payload",
            'Expected {"data": {"type": "span", "attributes": {"spans": [...]}}}.',
        )
    out: list[Any] = []
    for part in parts:
        attributes = _dict(_dict(part).get("attributes"))
        spans = attributes.get("spans")
        if not isinstance(spans, list):
            raise PayloadError(400, "malformed_payload", "data.attributes.spans must be a list.")
        out.extend((attributes, span) for span in spans)
    return out


def map_datadog(record: Any, now: datetime) -> Mapped:
    context, span = record
    if not isinstance(span, dict):
        return Rejected("a span must be a JSON object")
    meta = _dict(span.get("meta"))
    metrics = _dict(span.get("metrics"))
    ts = epoch_time(span.get("start_ns"), "ns")
    if ts is None:
        return Rejected("start_ns must be the span's start in Unix nanoseconds")
    kind = text(meta.get("kind") or span.get("kind"), 32) or "span"
    type_ = DATADOG_KINDS.get(kind, "agent_step")
    name = text(span.get("name"), 256)
    duration = number(span.get("duration"))
    error = _dict(meta.get("error"))
    failed = span.get("status") == "error"
    tags = [t[:200] for t in _list_of_str(span.get("tags") or context.get("tags"))][:50]
    data = compact(
        {
            "tool": name if type_ == "tool_call" else None,
            "method": "tools/call" if type_ == "tool_call" else None,
            "session_id": text(span.get("session_id") or context.get("session_id"), 128),
            "latency_ms": duration / 1e6 if duration is not None and duration >= 0 else None,
            "result": "error" if failed else "ok",
            "span_kind": kind,
            "span_name": name,
            "model": text(meta.get("model_name")),
            "provider": text(meta.get("model_provider")),
            "usage": compact(
                {
                    "input_tokens": integer(metrics.get("input_tokens")),
                    "output_tokens": integer(metrics.get("output_tokens")),
                    "total_tokens": integer(metrics.get("total_tokens")),
                }
            ),
            "error_type": text(error.get("type")) if failed else None,
            "error": text(error.get("message"), 500) if failed else None,
            "trace_id": text(span.get("trace_id")),
            "span_id": text(span.get("span_id")),
            "parent_id": text(span.get("parent_id")),
            "ml_app": text(context.get("ml_app")),
            "tags": tags,
        }
    )
    trace_id, span_id = text(span.get("trace_id")), text(span.get("span_id"))
    ml_app = text(context.get("ml_app"))
    return IngestItem(
        type=type_,
        ts=ts,
        data=data,
        actor={"kind": "agent", "id": None, "label": ml_app} if ml_app else None,
        external_id=f"{trace_id}:{span_id}" if trace_id and span_id else None,
    )


def _list_of_str(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# --- cloudflare ---------------------------------------------------------------------------------


def map_cloudflare(record: Any, now: datetime) -> Mapped:
    if not isinstance(record, dict):
        return Rejected("a log line must be a JSON object")
    ts = any_time(_first(record, "Datetime", "Timestamp", "EdgeStartTimestamp", "created_at"))
    if ts is None:
        return Rejected("the log has no Datetime/Timestamp (RFC 3339 or Unix time)")
    status = integer(_first(record, "StatusCode", "status_code"))
    rate_limited = _first(record, "RateLimited", "rate_limited") is True or status == 429
    # 424 Failed Dependency is how AI Gateway answers a request its guardrails or DLP blocked.
    decision = "rate_limited" if rate_limited else "deny" if status == 424 else None
    duration = number(_first(record, "Duration", "duration"))
    data = compact(
        {
            "decision": decision,
            "upstream_status": status,
            "latency_ms": duration,
            "result": _result(status, _first(record, "Success", "success")),
            "gateway": text(_first(record, "Gateway", "gateway")),
            "provider": text(_first(record, "Provider", "provider")),
            "model": text(_first(record, "Model", "model")),
            "model_type": text(_first(record, "ModelType", "model_type")),
            "endpoint": text(_first(record, "Endpoint", "path"), 500),
            "cached": _first(record, "Cached", "cached"),
            "step": integer(_first(record, "Step", "step")),
            "usage": compact(
                {
                    "input_tokens": integer(_first(record, "TokensIn", "tokens_in")),
                    "output_tokens": integer(_first(record, "TokensOut", "tokens_out")),
                }
            ),
            "cost": number(_first(record, "Cost", "cost")),
        }
    )
    if not isinstance(data.get("cached"), bool):
        data.pop("cached", None)
    return IngestItem(
        type="llm_call",
        ts=ts,
        data=data,
        external_id=text(_first(record, "ID", "Id", "id"), 128),
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
    if document["messageType"] != "DATA_MESSAGE" or not isinstance(
        document.get("logEvents"), list
    ):
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
    request, response = _dict(message.get("input")), _dict(message.get("output"))
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
    identity = text(_dict(message.get("identity")).get("arn"), 200)
    return IngestItem(
        type="llm_call",
        ts=ts,
        data=data,
        actor={"kind": "agent", "id": identity, "label": None} if identity else None,
        external_id=text(message.get("requestId"), 128),
    )


REGISTRY: dict[str, Provider] = {
    "generic": Provider("generic", _generic_records, map_generic),
    "otlp": Provider("otlp", otlp.records, otlp.map_record),
    "portkey": Provider("portkey", _records_in, map_portkey),
    "helicone": Provider("helicone", _records_in, map_helicone),
    "datadog": Provider("datadog", _datadog_records, map_datadog),
    "cloudflare": Provider("cloudflare", _records_in, map_cloudflare),
    "cloudwatch": Provider("cloudwatch", _cloudwatch_records, map_cloudwatch),
}
assert tuple(REGISTRY) == PROVIDERS
