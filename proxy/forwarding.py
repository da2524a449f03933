"""Forwarding one admitted POST to the upstream (proxy.upstream) and handing its answer on.

The circuit breaker (proxy.breaker) has admitted the call, or refused it: a refusal is answered
here, audited like an upstream failure. A legacy `initialize` gets its igris session binding;
the answer itself is streamed back by proxy.streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from django.conf import settings

from governance.policy import Decision
from governance.runtime import flags
from proxy import eras, jsonrpc
from proxy.breaker import Refusal
from proxy.deps import ProxyDeps
from proxy.exchange import Exchange
from proxy.http import ClientGone, Receive, Send, send_bytes
from proxy.http import send_rpc_error as rpc_error
from proxy.outcomes import (
    circuit_open_error,
    durable,
    record_cancelled,
    request_msg,
    state_store_down,
)
from proxy.sessions import new_session_id
from proxy.streaming import server_error, stream_response
from proxy.upstream import UpstreamError

# Requests that change nothing upstream: sent again once if a pooled connection broke under them.
RETRY_SAFE_METHODS = frozenset(
    {
        "ping",
        "server/discover",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
    }
)


async def circuit_open(
    deps: ProxyDeps, send: Send, exchange: Exchange, refusal: Refusal, decision: Decision | None
) -> None:
    """Fail fast while the upstream's circuit is open; audited like an upstream failure."""
    msg = request_msg(exchange)
    text, data, retry_header = circuit_open_error(exchange.server, refusal)
    if msg.kind != "request":
        await rpc_error(
            send, 503, jsonrpc.UPSTREAM_CIRCUIT_OPEN, text, data=data, headers=retry_header
        )
        return
    event = exchange.event(
        decision=decision.action if decision else "allow",
        result="upstream_error",
        decision_obj=decision,
        data={"error": text, "circuit": "open", "retry_after_s": refusal.retry_after},
    )
    if await durable(deps, send, exchange, event):
        await rpc_error(
            send,
            503,
            jsonrpc.UPSTREAM_CIRCUIT_OPEN,
            text,
            id=msg.id,
            data=data,
            headers=retry_header,
        )
        deps.sessions.note_call(exchange, denied=False, error=True)


async def relay(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    headers: dict[str, str],
    body: bytes,
    *,
    decision: Decision | None,
) -> None:
    msg = request_msg(exchange)
    upstream_headers = eras.upstream_headers(headers, exchange.server, exchange.binding)
    t_up = time.perf_counter()
    request = asyncio.ensure_future(
        deps.upstream.request(
            "POST",
            exchange.server.url,
            headers=upstream_headers,
            body=body,
            connect_timeout_s=exchange.server.connect_timeout_s,
            total_timeout_s=exchange.server.total_timeout_s,
            retry_safe=msg.method in RETRY_SAFE_METHODS,
        )
    )
    gone = asyncio.ensure_future(client_gone(exchange.receive))
    done, _ = await asyncio.wait({request, gone}, return_when=asyncio.FIRST_COMPLETED)
    if request not in done:
        # The client left before the answer: closing our upstream request is the
        # cancellation the upstream sees (MCP 2026-07-28: closing the stream cancels).
        request.cancel()
        with contextlib.suppress(BaseException):
            await request
        if msg.kind == "request":
            await record_cancelled(deps, exchange, decision, t_up)
        raise ClientGone()
    gone.cancel()
    with contextlib.suppress(BaseException):
        await gone
    try:
        response = request.result()
    except UpstreamError as exc:
        exchange.upstream_ms = (time.perf_counter() - t_up) * 1000
        await deps.breakers.settle(exchange.server, trial=exchange.circuit_trial, error=exc.message)
        if msg.kind != "request":
            await rpc_error(send, exc.status, exc.code, exc.message)
            return
        event = exchange.event(
            decision=decision.action if decision else "allow",
            result="upstream_error",
            decision_obj=decision,
            data={"error": exc.message},
        )
        if await durable(deps, send, exchange, event):
            await rpc_error(send, exc.status, exc.code, exc.message, id=msg.id)
            deps.sessions.note_call(exchange, denied=False, error=True)
        return
    exchange.upstream_status = response.status
    if msg.kind != "request":
        # Notifications and client responses: 202 with an empty body when accepted.
        try:
            await response.read(deps.max_body)
        except UpstreamError as exc:
            response.close()
            await deps.breakers.settle(
                exchange.server, trial=exchange.circuit_trial, error=exc.message
            )
            await rpc_error(send, exc.status, exc.code, exc.message)
            return
        response.release()
        await deps.breakers.settle(
            exchange.server, trial=exchange.circuit_trial, error=server_error(response.status)
        )
        if response.status >= 400:
            # Refused upstream: a JSON-RPC error like every other refusal, never an empty error
            # body. A 4xx keeps its status (a 404 tells the client to start a new session, MCP
            # transports); a 5xx is the upstream's failure, a 502 here.
            upstream_failed = response.status >= 500
            await rpc_error(
                send,
                502 if upstream_failed else response.status,
                jsonrpc.UPSTREAM_PROTOCOL if upstream_failed else jsonrpc.INVALID_REQUEST,
                f"The upstream server refused this {msg.kind}: HTTP {response.status}.",
                data={"upstream_status": response.status},
            )
            return
        await send_bytes(send, response.status, b"", content_type=None)
        return
    if msg.method == "initialize" and not exchange.era.modern and response.status == 200:
        exchange.session_id = new_session_id()
        binding = {
            "org": exchange.principal.org_id,
            "who": exchange.principal.identity,
            "server": exchange.server.id,
            "up": response.headers.get("mcp-session-id", ""),
            "client": exchange.client_info(),
        }
        try:
            await deps.hotstate.set_flag(
                flags.session_binding(exchange.session_id),
                json.dumps(binding),
                ttl_s=float(settings.IGRIS_SESSION_TTL_S),
            )
        except Exception:
            response.close()
            await state_store_down(send, msg.id, "session binding")
            return
    await stream_response(deps, send, exchange, response, decision=decision, t_upstream=t_up)


async def client_gone(receive: Receive | None) -> None:
    """Returns when the client disconnects (the request body has been read already)."""
    if receive is None:
        await asyncio.Event().wait()
        return
    while (await receive())["type"] != "http.disconnect":
        pass
