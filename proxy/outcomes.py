"""Answers that end a proxied call without the upstream, and the audit step before any answer.

Kill-switch refusals, rate limits, policy denials, rejected input and fail-closed errors are
answered here. Durability rule (DESIGN.md §3): no proxied call is answered unless its audit event
is durable; `durable` records it, or answers the audit outage itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from governance.policy import Decision
from proxy import audit, jsonrpc
from proxy.auth import Principal
from proxy.breaker import Refusal
from proxy.deps import ProxyDeps
from proxy.exchange import Exchange
from proxy.http import Send, send_bytes
from proxy.http import send_rpc_error as rpc_error
from proxy.runtime import ServerConfig

log = logging.getLogger("igris.proxy")


def request_msg(exchange: Exchange) -> jsonrpc.Message:
    """The request of a POST exchange (GET streams carry none)."""
    assert exchange.msg is not None
    return exchange.msg


async def durable(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    event: dict[str, Any],
    *,
    forwarded: bool = False,
) -> bool:
    try:
        await deps.recorder.record(event)
        return True
    except audit.AuditUnavailable:
        log.exception("audit store unavailable; failing closed")
        text = (
            "igris cannot record this call in its audit log, so the upstream's answer is withheld."
            if forwarded
            else "igris cannot record this call in its audit log, so it was not forwarded."
        )
        await rpc_error(send, 503, jsonrpc.AUDIT_UNAVAILABLE, text, id=request_msg(exchange).id)
        return False


async def refuse(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    state: str,
    reason: str,
    *,
    ended: bool = False,
) -> None:
    """Refuse a stopped call. `ended`: the client's own session was killed, so it is told to
    start a new one (404) rather than that it may not call at all (403)."""
    status, code = (
        (403, jsonrpc.SESSION_KILLED) if state == "killed" else (503, jsonrpc.SESSION_SUSPENDED)
    )
    if ended:
        status = 404
    text = f"This session was {state} by an operator" + (f": {reason}" if reason else ".")
    if ended:
        text += " Start a new session to continue."
    event = exchange.event(
        decision="refused",
        result="error",
        data={"reason": f"session_{state}", "detail": reason},
    )
    if await durable(deps, send, exchange, event):
        await rpc_error(
            send,
            status,
            code,
            text,
            id=request_msg(exchange).id,
            data={"state": state, "reason": reason},
        )
        deps.sessions.note_call(exchange, denied=True, error=False)


async def rate_limited(
    deps: ProxyDeps, send: Send, exchange: Exchange, retry_after_s: float
) -> None:
    retry = max(1, int(retry_after_s + 0.999))
    event = exchange.event(
        decision="rate_limited", result="error", data={"retry_after_s": round(retry_after_s, 3)}
    )
    if await durable(deps, send, exchange, event):
        await rpc_error(
            send,
            429,
            jsonrpc.RATE_LIMITED,
            f"Rate limit exceeded; retry after {retry} s.",
            id=request_msg(exchange).id,
            data={"retry_after_s": retry},
            headers=[(b"retry-after", str(retry).encode())],
        )
        deps.sessions.note_call(exchange, denied=True, error=False)


async def deny(deps: ProxyDeps, send: Send, exchange: Exchange, decision: Decision) -> None:
    event = exchange.event(decision="deny", result="denied", decision_obj=decision)
    if not await durable(deps, send, exchange, event):
        return
    text = exchange.denial_text(decision)
    if request_msg(exchange).method == "tools/call":
        body = jsonrpc.tool_error_result(
            request_msg(exchange).id,
            text,
            modern=exchange.era.modern,
            meta={"igris/decision": exchange.decision_meta(decision)},
        )
    else:
        body = jsonrpc.error_response(
            request_msg(exchange).id,
            jsonrpc.FORBIDDEN,
            text,
            {"igris/decision": exchange.decision_meta(decision)},
        )
    await send_bytes(send, 200, jsonrpc.dumps(body), headers=exchange.response_headers())
    deps.sessions.note_call(exchange, denied=True, error=False)


async def record_cancelled(
    deps: ProxyDeps, exchange: Exchange, decision: Decision | None, upstream_started: float
) -> None:
    """The client left before its answer, and closing the upstream request was the cancel the
    upstream saw: the call is recorded as cancelled. No answer is owed, so a failure to record
    can only be logged."""
    exchange.upstream_ms = (time.perf_counter() - upstream_started) * 1000
    event = exchange.event(
        decision=decision.action if decision else "allow",
        result="cancelled",
        decision_obj=decision,
        data={"reason": "client disconnected"},
    )
    try:
        await deps.recorder.record(event)
    except audit.AuditUnavailable:
        log.exception("could not record a cancelled call to %s", exchange.server.slug)


class Rejection:
    """Answers bad input after authentication with its JSON-RPC error, and records it in the
    organisation's audit log (type mcp_rejected). Nothing was forwarded, so an audit store that
    is down does not change the answer."""

    def __init__(
        self,
        recorder: audit.AuditRecorder,
        send: Send,
        principal: Principal,
        slug: str,
        server_id: str | None,
    ) -> None:
        self.recorder, self.send, self.principal = recorder, send, principal
        self.slug, self.server_id = slug, server_id

    async def __call__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        id: Any = None,
        data: Any = None,
        method: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        event = audit.build_event(
            org_id=self.principal.org_id,
            type="mcp_rejected",
            actor=self.principal.actor(),
            fields={
                "server_id": self.server_id,
                "server_slug": self.slug,
                "key_id": self.principal.key_id,
                "method": method,
                "decision": "rejected",
                "result": "error",
            },
            data={"status": status, "code": code, "reason": message},
        )
        try:
            await self.recorder.record(event)
        except audit.AuditUnavailable:
            log.warning("could not record a rejected request (%s %s)", status, code)
        await rpc_error(self.send, status, code, message, id=id, data=data, headers=headers)


_OUTAGE_LOG_EVERY_S = 10.0
_outage_logged_at = -_OUTAGE_LOG_EVERY_S


async def state_store_down(send: Send, id: Any, what: str) -> None:
    """Fail closed: without hot state igris can neither check nor record, so nothing is sent on.

    An outage refuses every request: the traceback is logged at most every 10 s, not per call.
    """
    global _outage_logged_at
    now = time.monotonic()
    if now - _outage_logged_at >= _OUTAGE_LOG_EVERY_S:
        _outage_logged_at = now
        log.exception("hot state unavailable (%s); refusing calls until it is back", what)
    await rpc_error(
        send,
        503,
        jsonrpc.AUDIT_UNAVAILABLE,
        "igris cannot reach its state store; the call was not forwarded.",
        id=id,
        headers=[(b"retry-after", b"1")],
    )


def circuit_open_error(
    server: ServerConfig, refusal: Refusal
) -> tuple[str, dict[str, Any], list[tuple[bytes, bytes]]]:
    """Message, JSON-RPC error data and Retry-After header of a call refused by the breaker."""
    retry = refusal.retry_after
    text = (
        f"The upstream server '{server.slug}' keeps failing, so igris is not forwarding to it "
        f"for now (circuit open); retry after {retry} s."
    )
    data = {"retry_after_s": retry, "last_error": refusal.last_error}
    return text, data, [(b"retry-after", str(retry).encode())]
