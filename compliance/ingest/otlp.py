"""OTLP/HTTP JSON (`/v1/traces` and `/v1/logs` bodies) with the GenAI semantic conventions.

Payload (OTLP 1.x, JSON encoding: lowerCamelCase names, trace and span ids as hex, 64-bit
integers possibly as strings):

    {"resourceSpans": [{"resource": {"attributes": [...]},
                        "scopeSpans": [{"scope": {...}, "spans": [{traceId, spanId, name,
                            startTimeUnixNano, endTimeUnixNano, attributes, status}]}]}],
     "resourceLogs":  [{"resource": ..., "scopeLogs": [{"scope": ..., "logRecords": [{
                            timeUnixNano, observedTimeUnixNano, eventName, attributes, body,
                            traceId, spanId}]}]}]}

Both may come in one body (one item per span and per log record, in that order). Mapping, by
`gen_ai.operation.name` (OpenTelemetry semantic conventions for generative AI, 1.37+):
`execute_tool` (or `mcp.method.name` = `tools/call`) -> `tool_call` with `gen_ai.tool.name`;
`chat`, `text_completion`, `generate_content`, `embeddings` -> `llm_call` with the model and
token usage; `invoke_agent`, `create_agent` -> `agent_run`; another MCP method -> `mcp_request`;
a GenAI log event without an operation (`gen_ai.choice`, ...) -> `gen_ai.event`. Spans and records
without any `gen_ai.*` or `mcp.*` attribute are rejected (they are not agent activity). Prompt and
completion content (`gen_ai.input.messages`, `gen_ai.output.messages`, tool arguments and results)
is never stored: only metadata, and the names of the tools a model asked for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from compliance.ingest.items import (
    IngestItem,
    Mapped,
    PayloadError,
    Rejected,
    compact,
    epoch_time,
    fingerprint,
    integer,
    load_json,
    number,
    text,
)

LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
# OTLP status codes: JSON may carry the enum's number or its name.
STATUS_ERROR = (2, "STATUS_CODE_ERROR")
MAX_ATTRIBUTE_DEPTH = 8


def any_value(value: Any, depth: int = 0) -> Any:
    """An OTLP AnyValue as plain JSON."""
    if not isinstance(value, dict) or depth > MAX_ATTRIBUTE_DEPTH:
        return None
    if "stringValue" in value:
        return value["stringValue"] if isinstance(value["stringValue"], str) else None
    if "boolValue" in value:
        return value["boolValue"] if isinstance(value["boolValue"], bool) else None
    if "intValue" in value:
        return integer(value["intValue"])
    if "doubleValue" in value:
        return number(value["doubleValue"])
    if "arrayValue" in value:
        items = _dict(value["arrayValue"]).get("values") or []
        return [any_value(item, depth + 1) for item in items if isinstance(item, dict)]
    if "kvlistValue" in value:
        return attributes(_dict(value["kvlistValue"]).get("values"), depth + 1)
    if "bytesValue" in value:
        return value["bytesValue"] if isinstance(value["bytesValue"], str) else None
    return None


def attributes(pairs: Any, depth: int = 0) -> dict[str, Any]:
    """`[{"key": k, "value": AnyValue}]` as a dict."""
    out: dict[str, Any] = {}
    if not isinstance(pairs, list):
        return out
    for pair in pairs:
        if isinstance(pair, dict) and isinstance(pair.get("key"), str):
            out[pair["key"]] = any_value(pair.get("value"), depth)
    return out


def records(body: bytes) -> list[Any] | None:
    """One (kind, resource attributes, scope name, span or log record) per item."""
    document = load_json(body)
    if not isinstance(document, dict) or not (
        "resourceSpans" in document or "resourceLogs" in document
    ):
        raise PayloadError(
            400,
            "malformed_payload",
            'Expected an OTLP/HTTP JSON export: {"resourceSpans": [...]} or '
            '{"resourceLogs": [...]}.',
        )
    out: list[Any] = []
    for kind, resource_key, scope_key, item_key in (
        ("span", "resourceSpans", "scopeSpans", "spans"),
        ("log", "resourceLogs", "scopeLogs", "logRecords"),
    ):
        for resource in _list(document.get(resource_key)):
            resource_attrs = attributes(_dict(resource.get("resource")).get("attributes"))
            for scope in _list(resource.get(scope_key)):
                scope_name = text(_dict(scope.get("scope")).get("name"))
                out.extend(
                    (kind, resource_attrs, scope_name, item) for item in _any(scope.get(item_key))
                )
    # An export with nothing in it is valid OTLP (a heartbeat of sorts): a no-op.
    return out or None


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    # A sender may put any JSON where OTLP has an object: a string there is no resource, scope
    # or status, not a reason to fail the whole request.
    return value if isinstance(value, dict) else {}


def _any(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def map_record(record: Any, now: datetime) -> Mapped:
    kind, resource, scope_name, item = record
    if not isinstance(item, dict):
        return Rejected(f"a {kind} must be a JSON object")
    attrs = attributes(item.get("attributes"))
    if kind == "span":
        start = epoch_time(item.get("startTimeUnixNano"), "ns")
        end = epoch_time(item.get("endTimeUnixNano"), "ns")
        if start is None:
            return Rejected("the span has no startTimeUnixNano")
        latency = (end - start).total_seconds() * 1000 if end is not None and end >= start else None
        failed = _dict(item.get("status")).get("code") in STATUS_ERROR
        name = text(item.get("name"), 256)
        event_name = None
        ts = start
    else:
        logged = epoch_time(item.get("timeUnixNano"), "ns") or epoch_time(
            item.get("observedTimeUnixNano"), "ns"
        )
        if logged is None:
            return Rejected("the log record has neither timeUnixNano nor observedTimeUnixNano")
        ts = logged
        latency, failed, name = None, False, None
        event_name = text(item.get("eventName"), 100) or text(attrs.get("event.name"), 100)
    operation = text(attrs.get("gen_ai.operation.name"), 64)
    mcp_method = text(attrs.get("mcp.method.name"), 64)
    has_genai = any(key.startswith(("gen_ai.", "mcp.")) for key in attrs) or (
        event_name is not None and event_name.startswith("gen_ai.")
    )
    if not has_genai:
        return Rejected(f"not a GenAI or MCP {kind}: no gen_ai.* or mcp.* attributes")

    tool = text(attrs.get("gen_ai.tool.name"), 256)
    if operation == "execute_tool" or mcp_method == "tools/call":
        type_, method = "tool_call", "tools/call"
        tool = tool or _tool_from_span_name(name)
    elif operation in LLM_OPERATIONS:
        type_, method = "llm_call", None
    elif operation in AGENT_OPERATIONS:
        type_, method = "agent_run", None
    elif mcp_method is not None:
        type_, method = "mcp_request", mcp_method
    elif operation is not None:
        type_, method = f"gen_ai.{operation.lower()}"[:100], None
    else:
        type_, method = "gen_ai.event", None

    body = any_value(item.get("body")) if kind == "log" else None
    trace_id, span_id = text(item.get("traceId"), 64), text(item.get("spanId"), 32)
    error_type = text(attrs.get("error.type"), 200)
    data = compact(
        {
            "tool": tool if type_ in ("tool_call", "mcp_request") else None,
            "method": method,
            "session_id": text(
                attrs.get("gen_ai.conversation.id")
                or attrs.get("mcp.session.id")
                or attrs.get("session.id"),
                128,
            ),
            "server_slug": text(attrs.get("mcp.server.name") or attrs.get("server.address"), 64)
            if type_ in ("tool_call", "mcp_request")
            else None,
            "latency_ms": round(latency, 3) if latency is not None else None,
            "result": "error" if failed or error_type else "ok" if kind == "span" else None,
            "operation": operation,
            "event_name": event_name,
            "model": text(attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")),
            "provider": text(attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")),
            "usage": compact(
                {
                    "input_tokens": integer(attrs.get("gen_ai.usage.input_tokens")),
                    "output_tokens": integer(attrs.get("gen_ai.usage.output_tokens")),
                }
            ),
            "tool_call_id": text(attrs.get("gen_ai.tool.call.id")),
            "tool_type": text(attrs.get("gen_ai.tool.type")),
            "tool_calls": _requested_tools(body),
            "agent": text(attrs.get("gen_ai.agent.name")),
            "finish_reasons": _strings(attrs.get("gen_ai.response.finish_reasons")),
            "error_type": error_type,
            "span_name": name if kind == "span" else None,
            "trace_id": trace_id,
            "span_id": span_id,
            "service": text(resource.get("service.name")),
            "scope": scope_name,
        }
    )
    agent_label = text(attrs.get("gen_ai.agent.name")) or text(resource.get("service.name"))
    actor = compact(
        {"kind": "agent", "id": text(attrs.get("gen_ai.agent.id")), "label": agent_label}
    )
    if kind == "span":
        external = f"{trace_id}:{span_id}" if trace_id and span_id else fingerprint(item)
    else:
        external = fingerprint(item)  # log records carry no id of their own
    return IngestItem(
        type=type_,
        ts=ts,
        data=data,
        actor=actor if len(actor) > 1 else None,
        external_id=external,
    )


def _tool_from_span_name(name: str | None) -> str | None:
    """`execute_tool get_weather` / `tools/call get_weather` (the conventions' span names)."""
    if not name:
        return None
    head, _, rest = name.partition(" ")
    return text(rest, 256) if head in ("execute_tool", "tools/call") else None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list):
        return [v[:100] for v in value if isinstance(v, str)][:20] or None
    return None


def _requested_tools(body: Any) -> list[str] | None:
    """Tool names a model asked for in a `gen_ai.choice` style event body."""
    if not isinstance(body, dict):
        return None
    message = body["message"] if isinstance(body.get("message"), dict) else body
    calls = message.get("tool_calls")
    names: list[str] = []
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict):
            function = call["function"] if isinstance(call.get("function"), dict) else call
            name = text(function.get("name"), 256)
            if name and name not in names:
                names.append(name)
    return names[:50] or None
