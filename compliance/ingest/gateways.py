"""LLM gateways and observability platforms: Portkey, Helicone, Datadog LLM Observability and
Cloudflare AI Gateway (shapes documented in compliance/ingest/providers.py). Pure.

They record model requests, so their items are mostly `llm_call`s carrying metadata only; the
tools a model asked for are kept by name (`tool_calls`), which the destructive-name check reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from compliance.ingest.items import (
    IngestItem,
    Mapped,
    PayloadError,
    Rejected,
    any_time,
    compact,
    epoch_time,
    fingerprint,
    integer,
    json_document,
    load_json,
    load_json_lines,
    number,
    text,
)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def first(record: dict[str, Any], *names: str) -> Any:
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

    choices, content = body.get("choices"), body.get("content")
    for choice in choices if isinstance(choices, list) else []:
        message = as_dict(as_dict(choice).get("message") or as_dict(choice).get("delta"))
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            add(as_dict(as_dict(call).get("function")).get("name"))
    for block in content if isinstance(content, list) else []:
        if as_dict(block).get("type") == "tool_use":
            add(as_dict(block).get("name"))
    output = body.get("output")
    for item in output if isinstance(output, list) else []:
        if as_dict(item).get("type") == "function_call":
            add(as_dict(item).get("name"))
    content = as_dict(as_dict(output).get("message")).get("content")
    for block in content if isinstance(content, list) else []:
        add(as_dict(as_dict(block).get("toolUse")).get("name"))
    return names[:50] or None


def _usage(body: Any) -> dict[str, int]:
    usage = as_dict(as_dict(json_document(body)).get("usage"))
    return compact(
        {
            "input_tokens": integer(first(usage, "prompt_tokens", "input_tokens")),
            "output_tokens": integer(first(usage, "completion_tokens", "output_tokens")),
        }
    )


def _plain(values: Any, limit: int = 20) -> dict[str, Any] | None:
    """Scalar entries of a caller-defined mapping (metadata, properties), bounded."""
    mapping = as_dict(json_document(values))
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


# --- portkey ------------------------------------------------------------------------------------


def records_in(body: bytes) -> list[Any] | None:
    """A JSON array, NDJSON, one object, or `{"data": [...]}` (list APIs)."""
    records = load_json_lines(body)
    if (
        len(records) == 1
        and isinstance(records[0], dict)
        and isinstance(records[0].get("data"), list)
    ):
        return list(records[0]["data"])
    return records


def map_portkey(record: Any, now: datetime) -> Mapped:
    if not isinstance(record, dict):
        return Rejected("a log must be a JSON object")
    request = as_dict(json_document(record.get("request")))
    response = as_dict(json_document(record.get("response")))
    request_body = as_dict(json_document(request.get("body")))
    response_body = json_document(response.get("body"))
    metadata = as_dict(json_document(record.get("metadata") or request.get("metadata")))
    given_ts = first(record, "created_at", "time_of_generation")
    ts = any_time(given_ts) if given_ts is not None else now
    if ts is None:
        return Rejected("created_at is not a timestamp")
    status = integer(first(record, "response_status_code", "status_code")) or integer(
        response.get("status")
    )
    usage = compact(
        {
            "input_tokens": integer(first(record, "req_units", "prompt_tokens")),
            "output_tokens": integer(first(record, "res_units", "completion_tokens")),
        }
    ) or _usage(response_body)
    latency = number(first(record, "response_time")) or number(response.get("response_time"))
    data = compact(
        {
            "session_id": text(
                metadata.get("session_id") or metadata.get("_session") or record.get("trace_id"),
                128,
            ),
            "upstream_status": status,
            "latency_ms": latency,
            "result": _result(status, record.get("is_success")),
            "model": text(first(record, "ai_model", "model") or request_body.get("model")),
            "provider": text(first(record, "ai_org", "ai_provider", "provider")),
            "usage": usage,
            "cost": number(record.get("cost")),
            "tool_calls": requested_tools(response_body),
            "trace_id": text(record.get("trace_id")),
            "span_id": text(record.get("span_id")),
            "request_url": text(first(record, "request_url") or request.get("url"), 500),
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
    request_body = as_dict(json_document(record.get("request_body")))
    response_body = json_document(record.get("response_body"))
    metadata = as_dict(record.get("metadata"))
    properties = as_dict(record.get("properties"))
    given_ts = first(record, "created_at", "request_created_at")
    # Webhooks are sent as the request completes and may carry no time: receipt time then.
    ts = any_time(given_ts) if given_ts is not None else now
    if ts is None:
        return Rejected("created_at is not a timestamp")
    is_tool = request_body.get("_type") == "tool"
    status = integer(first(record, "status", "response_status")) or integer(
        as_dict(response_body).get("status")
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


def datadog_records(body: bytes) -> list[Any] | None:
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
        attributes = as_dict(as_dict(part).get("attributes"))
        spans = attributes.get("spans")
        if not isinstance(spans, list):
            raise PayloadError(400, "malformed_payload", "data.attributes.spans must be a list.")
        out.extend((attributes, span) for span in spans)
    return out


def map_datadog(record: Any, now: datetime) -> Mapped:
    context, span = record
    if not isinstance(span, dict):
        return Rejected("a span must be a JSON object")
    meta = as_dict(span.get("meta"))
    metrics = as_dict(span.get("metrics"))
    ts = epoch_time(span.get("start_ns"), "ns")
    if ts is None:
        return Rejected("start_ns must be the span's start in Unix nanoseconds")
    kind = text(meta.get("kind") or span.get("kind"), 32) or "span"
    type_ = DATADOG_KINDS.get(kind, "agent_step")
    name = text(span.get("name"), 256)
    duration = number(span.get("duration"))
    error = as_dict(meta.get("error"))
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
            "parent_id": None
            if span.get("parent_id") == "undefined"
            else text(span.get("parent_id")),
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
    ts = any_time(first(record, "Datetime", "Timestamp", "EdgeStartTimestamp", "created_at"))
    if ts is None:
        return Rejected("the log has no Datetime/Timestamp (RFC 3339 or Unix time)")
    status = integer(first(record, "StatusCode", "status_code"))
    rate_limited = first(record, "RateLimited", "rate_limited") is True or status == 429
    # 424 Failed Dependency is how AI Gateway answers a request its guardrails or DLP blocked.
    decision = "rate_limited" if rate_limited else "deny" if status == 424 else None
    duration = number(first(record, "Duration", "duration"))
    data = compact(
        {
            "decision": decision,
            "upstream_status": status,
            "latency_ms": duration,
            "result": _result(status, first(record, "Success", "success")),
            "gateway": text(first(record, "Gateway", "gateway")),
            "provider": text(first(record, "Provider", "provider")),
            "model": text(first(record, "Model", "model")),
            "model_type": text(first(record, "ModelType", "model_type")),
            "endpoint": text(first(record, "Endpoint", "path"), 500),
            "cached": first(record, "Cached", "cached"),
            "step": integer(first(record, "Step", "step")),
            "usage": compact(
                {
                    "input_tokens": integer(first(record, "TokensIn", "tokens_in")),
                    "output_tokens": integer(first(record, "TokensOut", "tokens_out")),
                }
            ),
            "cost": number(first(record, "Cost", "cost")),
        }
    )
    if not isinstance(data.get("cached"), bool):
        data.pop("cached", None)
    return IngestItem(
        type="llm_call",
        ts=ts,
        data=data,
        external_id=text(first(record, "ID", "Id", "id"), 128) or fingerprint(record),
    )
