"""Pure JSON-RPC 2.0 parsing and error shapes for MCP (no I/O).

Error codes: the JSON-RPC standard ones, the MCP 2026-07-28 ones (-32020 header mismatch,
-32022 unsupported protocol version) and igris' own, kept outside -32768..-32000 as the MCP
spec asks of implementation-defined codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
UNSUPPORTED_VERSION = -32022

# igris codes (outside the reserved range).
UNAUTHORIZED = -31001
FORBIDDEN = -31002
SESSION_KILLED = -31003
SESSION_SUSPENDED = -31004
RATE_LIMITED = -31005
QUOTA_EXCEEDED = -31006
UPSTREAM_UNREACHABLE = -31007
UPSTREAM_TIMEOUT = -31008
UPSTREAM_PROTOCOL = -31009
AUDIT_UNAVAILABLE = -31010
SERVER_DISABLED = -31011
TOOL_BLOCKED = -31012
UPSTREAM_CIRCUIT_OPEN = -31013

MAX_ID_LENGTH = 200


class JsonRpcError(Exception):
    def __init__(
        self, code: int, message: str, *, status: int = 400, data: Any = None, id: Any = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.data = data
        self.id = id

    def body(self) -> dict[str, Any]:
        return error_response(self.id, self.code, self.message, self.data)


@dataclass(frozen=True)
class Message:
    kind: str  # request | notification | response
    id: Any
    method: str | None
    params: dict[str, Any] | None
    raw: dict[str, Any]

    @property
    def name(self) -> str | None:
        """The target a policy matches on: tool/prompt name or resource uri."""
        if not self.params:
            return None
        value = (
            self.params.get("uri") if self.method == "resources/read" else self.params.get("name")
        )
        return value if isinstance(value, str) else None

    @property
    def arguments(self) -> dict[str, Any] | None:
        if not self.params:
            return None
        args = self.params.get("arguments")
        return args if isinstance(args, dict) else None


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH


def parse_message(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise JsonRpcError(INVALID_REQUEST, "A JSON-RPC message must be an object.")
    if obj.get("jsonrpc") != "2.0":
        raise JsonRpcError(
            INVALID_REQUEST, "The 'jsonrpc' member must be \"2.0\".", id=_safe_id(obj)
        )
    method = obj.get("method")
    has_id = "id" in obj
    if method is not None:
        if not isinstance(method, str) or not method or len(method) > 200:
            raise JsonRpcError(
                INVALID_REQUEST, "'method' must be a non-empty string.", id=_safe_id(obj)
            )
        params = obj.get("params")
        if params is not None and not isinstance(params, dict):
            raise JsonRpcError(INVALID_REQUEST, "'params' must be an object.", id=_safe_id(obj))
        if has_id:
            if not _valid_id(obj["id"]):
                raise JsonRpcError(INVALID_REQUEST, "'id' must be a string or an integer.")
            return Message("request", obj["id"], method, params, obj)
        return Message("notification", None, method, params, obj)
    if has_id and ("result" in obj or "error" in obj):
        return Message("response", obj["id"], None, None, obj)
    raise JsonRpcError(
        INVALID_REQUEST, "Not a JSON-RPC request, notification or response.", id=_safe_id(obj)
    )


def _safe_id(obj: dict[str, Any]) -> Any:
    value = obj.get("id")
    return value if _valid_id(value) else None


def _refuse_constant(token: str) -> Any:
    # Python's json reads NaN, Infinity and -Infinity; RFC 8259 §6 has no such numbers, and
    # neither the upstream nor the audit log's canonical encoding could carry them.
    raise ValueError(f"{token} is not a JSON number")


def _unpaired_surrogate(obj: Any) -> bool:
    """Whether any string (key or value) holds a lone UTF-16 surrogate.

    RFC 8259 §8.2 lets `"\\ud800"` parse but leaves its meaning undefined; such text cannot be
    encoded as UTF-8, so neither the answer nor the audit event could be written. Iterative, so
    depth costs no recursion.
    """
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def parse_body(body: bytes) -> Message | list[Message]:
    """Parse one POST body: a message, or a batch array (2025-03-26 only)."""
    if not body.strip():
        raise JsonRpcError(PARSE_ERROR, "The request body is empty.")
    try:
        obj = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonRpcError(PARSE_ERROR, "The body is nested too deeply to be read.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonRpcError(PARSE_ERROR, f"The body is not valid JSON: {exc}.") from None
    # A lone surrogate arrives only as a \u escape or as raw bytes 0xED 0xA0-0xBF (json reads
    # bytes with surrogatepass): the walk is skipped for bodies that hold neither.
    if (b"\\u" in body or b"\xed" in body) and _unpaired_surrogate(obj):
        raise JsonRpcError(
            PARSE_ERROR, "The body holds an unpaired UTF-16 surrogate, which is not valid text."
        )
    if isinstance(obj, list):
        if not obj:
            raise JsonRpcError(INVALID_REQUEST, "An empty batch is not a valid request.")
        return [parse_message(item) for item in obj]
    return parse_message(obj)


def error_response(id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id, "error": error}


def tool_error_result(
    id: Any, text: str, *, modern: bool, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A tool result with isError: the agent sees why and can correct itself (MCP tools spec)."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if modern:
        result["resultType"] = "complete"
    if meta:
        result["_meta"] = meta
    return {"jsonrpc": "2.0", "id": id, "result": result}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def result_outcome(message: dict[str, Any]) -> str:
    """ok | error | tool_error, for the audit log."""
    if "error" in message:
        return "error"
    result = message.get("result")
    if isinstance(result, dict) and result.get("isError") is True:
        return "tool_error"
    return "ok"
