"""GET and DELETE on the MCP endpoint: a legacy session's standalone stream, and its end.

Streamable HTTP (MCP 2025-06-18, 2025-11-25): GET opens the server-to-client SSE stream of a
session, DELETE ends the session. The modern era has neither (MCP 2026-07-28).
"""

from __future__ import annotations

import logging
import time

from governance.runtime import flags
from proxy import eras, jsonrpc
from proxy.auth import Principal
from proxy.breaker import Refusal
from proxy.deps import ProxyDeps
from proxy.exchange import Exchange
from proxy.http import Receive, Send, send_bytes
from proxy.http import send_rpc_error as rpc_error
from proxy.outcomes import circuit_open_error, state_store_down
from proxy.runtime import ServerConfig
from proxy.sessions import parse_binding
from proxy.streaming import server_error, stream_response
from proxy.upstream import UpstreamError

log = logging.getLogger("igris.proxy")


async def stream_or_delete(
    deps: ProxyDeps,
    method: str,
    receive: Receive,
    send: Send,
    headers: dict[str, str],
    principal: Principal,
    server: ServerConfig,
) -> None:
    version = headers.get("mcp-protocol-version")
    if version in eras.MODERN_VERSIONS:
        # Modern era has no standalone stream and no sessions (MCP 2026-07-28).
        await rpc_error(
            send,
            405,
            jsonrpc.INVALID_REQUEST,
            f"{method} is not used in protocol {version}.",
            headers=[(b"allow", b"POST")],
        )
        return
    session_id = headers.get("mcp-session-id")
    if not session_id:
        await rpc_error(
            send, 400, jsonrpc.INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header."
        )
        return
    keys = [
        flags.session_binding(session_id),
        flags.kill_session(session_id),
        flags.kill_org(principal.org_id),
        flags.kill_server(server.id),
    ]
    if principal.key_id:
        keys.append(flags.kill_key(principal.key_id))
    try:
        values = await deps.hotstate.get_flags(keys)
    except Exception:
        await state_store_down(send, None, "flags")
        return
    binding = parse_binding(values[0])
    if (
        binding is None
        or binding.get("who") != principal.identity
        or binding.get("server") != server.id
    ):
        await rpc_error(send, 404, jsonrpc.INVALID_REQUEST, "Session not found.")
        return
    stop = next(((i, flags.parse_kill(v)) for i, v in enumerate(values) if i and v), None)
    if stop is not None:
        index, (state, _reason) = stop  # type: ignore[misc]
        # The session itself killed: 404 tells the client to start a new one (as for a POST).
        status = 503 if state != "killed" else 404 if index == 1 else 403
        await rpc_error(
            send,
            status,
            jsonrpc.SESSION_KILLED if state == "killed" else jsonrpc.SESSION_SUSPENDED,
            f"This session was {state} by an operator.",
        )
        return
    upstream_headers = eras.upstream_headers(headers, server, binding)
    admission = await deps.breakers.admit(server)
    if isinstance(admission, Refusal):
        text, data, retry_header = circuit_open_error(server, admission)
        await rpc_error(
            send, 503, jsonrpc.UPSTREAM_CIRCUIT_OPEN, text, data=data, headers=retry_header
        )
        return
    try:
        response = await deps.upstream.request(
            method,
            server.url,
            headers=upstream_headers,
            body=None,
            connect_timeout_s=server.connect_timeout_s,
            total_timeout_s=server.total_timeout_s,
        )
    except UpstreamError as exc:
        await deps.breakers.settle(server, trial=admission, error=exc.message)
        await rpc_error(send, exc.status, exc.code, exc.message)
        return
    else:
        # A standalone stream counts once, when it opens: a long silence is normal there.
        await deps.breakers.settle(server, trial=admission, error=server_error(response.status))
    finally:
        if admission:
            await deps.breakers.finish_trial(server)
    if method == "DELETE":
        try:
            await response.read(deps.max_body)
        except UpstreamError as exc:
            response.close()
            await rpc_error(send, exc.status, exc.code, exc.message)
            return
        response.release()
        if response.status < 300:
            try:
                await deps.hotstate.delete_flag(flags.session_binding(session_id))
            except Exception:
                log.warning("could not drop session binding %s", session_id)
            deps.sessions.note_closed(session_id)
        await send_bytes(send, response.status, b"", content_type=None)
        return
    exchange = Exchange(
        principal=principal,
        server=server,
        org=None,
        msg=None,
        era=eras.LEGACY_ERA,
        session_id=session_id,
        binding=binding,
        started=time.perf_counter(),
        request_bytes=0,
        receive=receive,
    )
    await stream_response(
        deps, send, exchange, response, decision=None, t_upstream=time.perf_counter()
    )
