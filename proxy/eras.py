"""Protocol eras (MCP spec: legacy up to 2025-11-25, modern from 2026-07-28) and header rules."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from proxy import jsonrpc
from proxy.jsonrpc import JsonRpcError, Message

LEGACY_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)
SUPPORTED_VERSIONS = LEGACY_VERSIONS + MODERN_VERSIONS
NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
LIST_METHODS = {
    "tools/list": ("tools", "name"),
    "prompts/list": ("prompts", "name"),
    "resources/list": ("resources", "uri"),
}
# Client headers that travel upstream; everything else (Authorization, Cookie, Host, …) stays here.
FORWARDED = (
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "user-agent",
    "traceparent",
    "tracestate",
    "baggage",
)


@dataclass(frozen=True)
class Era:
    modern: bool
    version: str


LEGACY_ERA = Era(modern=False, version="2025-03-26")


def _decode_header(value: str) -> str:
    # 2026-07-28: non-ASCII values travel as =?base64?<b64>?=
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return "\x00invalid"
    return value


def _meta(msg: Message) -> dict[str, Any]:
    """params._meta when it is an object; a client may send anything there."""
    meta = (msg.params or {}).get("_meta")
    return meta if isinstance(meta, dict) else {}


def classify(headers: dict[str, str], msg: Message) -> Era:
    """Route by MCP-Protocol-Version; validate modern headers against the body."""
    version = headers.get("mcp-protocol-version")
    if version is None:
        # initialize names the version it proposes in its params; otherwise a missing header
        # means 2025-03-26 (MCP 2025-06-18, transports).
        proposed = (msg.params or {}).get("protocolVersion") if msg.method == "initialize" else None
        if proposed in LEGACY_VERSIONS:
            return Era(modern=False, version=proposed)
        return Era(modern=False, version="2025-03-26")
    version = version.strip()
    if version in LEGACY_VERSIONS:
        return Era(modern=False, version=version)
    if version not in MODERN_VERSIONS:
        raise JsonRpcError(
            jsonrpc.UNSUPPORTED_VERSION,
            f"Unsupported protocol version: {version}",
            data={"supported": list(SUPPORTED_VERSIONS), "requested": version},
            id=msg.id,
        )
    if msg.kind == "response":
        raise JsonRpcError(
            jsonrpc.INVALID_REQUEST,
            "Clients do not send responses in protocol 2026-07-28.",
            id=msg.id,
        )
    meta_version = _meta(msg).get("io.modelcontextprotocol/protocolVersion")
    if meta_version is not None and meta_version != version:
        raise JsonRpcError(
            jsonrpc.HEADER_MISMATCH,
            "MCP-Protocol-Version does not match _meta io.modelcontextprotocol/protocolVersion.",
            id=msg.id,
        )
    header_method = headers.get("mcp-method")
    if header_method is None or _decode_header(header_method) != msg.method:
        raise JsonRpcError(
            jsonrpc.HEADER_MISMATCH,
            f"Mcp-Method header must equal the body method '{msg.method}'.",
            id=msg.id,
        )
    field = NAMED_METHODS.get(msg.method or "")
    if field is not None:
        expected = (msg.params or {}).get(field)
        header_name = headers.get("mcp-name")
        if header_name is None or _decode_header(header_name) != expected:
            raise JsonRpcError(
                jsonrpc.HEADER_MISMATCH,
                f"Mcp-Name header must equal params.{field} of {msg.method}.",
                id=msg.id,
            )
    return Era(modern=True, version=version)


def modern_slot(identity: str, server_id: str, msg: Message) -> str:
    """The 2026-07-28-era agent slot: who (key or user) calls which server with which client.

    It is also the id of the slot's first session (generation 0); see `modern_session_id`."""
    client = _meta(msg).get("io.modelcontextprotocol/clientInfo") or {}
    name = client.get("name", "") if isinstance(client, dict) else ""
    digest = hashlib.sha256(f"{identity}|{server_id}|{name}".encode()).hexdigest()[:32]
    return f"igm_{digest}"


def modern_session_id(slot: str, generation: int) -> str:
    """The session of a slot's generation: a kill moves the slot on, so the agent's next call
    opens a new session instead of meeting the killed one for ever."""
    if generation <= 0:
        return slot
    digest = hashlib.sha256(f"{slot}|{generation}".encode()).hexdigest()[:32]
    return f"igm_{digest}"


def client_info(msg: Message | None) -> dict[str, Any] | None:
    if msg is None or not msg.params:
        return None
    if msg.method == "initialize":
        info = msg.params.get("clientInfo")
    else:
        info = _meta(msg).get("io.modelcontextprotocol/clientInfo")
    if isinstance(info, dict):
        return {
            k: info.get(k) for k in ("name", "version", "title") if isinstance(info.get(k), str)
        }
    return None


def upstream_headers(
    client: dict[str, str], server: Any, binding: dict[str, Any] | None
) -> dict[str, str]:
    out = {name: client[name] for name in FORWARDED if name in client}
    for name, value in client.items():
        if name.startswith("mcp-param-"):
            out[name] = value
    out.setdefault("accept", "application/json, text/event-stream")
    if binding and binding.get("up"):
        out["mcp-session-id"] = binding["up"]
    if server.auth_header is not None:
        out[server.auth_header[0]] = server.auth_header[1]
    return out
