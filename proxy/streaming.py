"""The streaming of the upstream answer back to the client.

JSON answers are read (bounded), rewritten when a list must be filtered, audited, then sent. SSE
answers are streamed event by event without buffering the stream: ids, `retry:` and comments
pass through unchanged, keep-alive comments fill silences, the final response is audited before
it is forwarded, and a kill closes the stream within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from governance.policy import Decision
from proxy import audit, eras, jsonrpc
from proxy.deps import ProxyDeps
from proxy.exchange import Exchange
from proxy.http import Send
from proxy.outcomes import durable, record_cancelled
from proxy.sse import SseEvent, SseParser, SseTooLarge
from proxy.upstream import UpstreamError, UpstreamResponse

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
KILL_TICK_S = 0.5


async def _rewrite_list(deps: ProxyDeps, exchange: Exchange, message: dict[str, Any]) -> bool:
    """Hide listed items the caller may not use; True when the message changed.

    Policy: an item is hidden when every call to it would be denied. Tools also go through the
    catalogue: what the server listed is recorded, and tools that changed since approval are
    reported (and hidden when the organisation blocks them)."""
    msg = exchange.msg
    if msg is None or msg.method not in eras.LIST_METHODS or exchange.snapshot is None:
        return False
    result = message.get("result")
    if not isinstance(result, dict):
        return False
    field, key = eras.LIST_METHODS[msg.method]
    items = result.get(field)
    if not isinstance(items, list):
        return False
    if msg.method == "tools/list":
        drifted, items = await deps.catalog.observe(
            exchange.principal.org_id,
            exchange.server.id,
            [t for t in items if isinstance(t, dict)],
            block=bool(exchange.org and exchange.org.block_drifted_tools),
        )
        if drifted:
            deps.detector.report_drift(exchange, drifted)
    target = {
        "tools/list": "tools/call",
        "prompts/list": "prompts/get",
        "resources/list": "resources/read",
    }[msg.method]
    kept = exchange.snapshot.filter_items(exchange.call_context(), target, items, key)
    if exchange.era.modern:
        # A per-caller filtered list must not be cached by shared intermediaries (MCP 2026-07-28).
        result["cacheScope"] = "private"
    result[field] = kept
    return True


def server_error(status: int) -> str | None:
    """What a breaker counts as a failure of an answer that arrived: a 5xx status."""
    return f"The upstream server answered HTTP {status}." if status >= 500 else None


async def _settle(deps: ProxyDeps, exchange: Exchange, error: str | None) -> None:
    await deps.breakers.settle(exchange.server, trial=exchange.circuit_trial, error=error)


def _outcome(message: dict[str, Any] | None) -> str:
    return jsonrpc.result_outcome(message) if message is not None else "upstream_error"


async def stream_response(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    response: UpstreamResponse,
    *,
    decision: Decision | None,
    t_upstream: float,
) -> None:
    content_type = response.content_type
    msg = exchange.msg
    if content_type == "text/event-stream" and response.status == 200:
        await _stream_sse(deps, send, exchange, response, decision=decision, t_upstream=t_upstream)
        return
    try:
        body = await response.read(deps.max_response)
    except UpstreamError as exc:
        response.close()
        exchange.upstream_ms = (time.perf_counter() - t_upstream) * 1000
        await _fail(deps, send, exchange, exc.status, exc.code, exc.message, decision)
        return
    response.release()
    exchange.upstream_ms = (time.perf_counter() - t_upstream) * 1000
    message: dict[str, Any] | None = None
    if content_type == "application/json" and body:
        try:
            parsed = json.loads(body)
            message = parsed if isinstance(parsed, dict) else None
        except ValueError:
            message = None
        if message is None and response.status == 200:
            await _fail(
                deps,
                send,
                exchange,
                502,
                jsonrpc.UPSTREAM_PROTOCOL,
                "The upstream server answered with invalid JSON.",
                decision,
            )
            return
    if msg is not None:
        await _settle(deps, exchange, server_error(response.status))
    if (
        message is not None
        and response.status == 200
        and await _rewrite_list(deps, exchange, message)
    ):
        body = jsonrpc.dumps(message)
    exchange.response_bytes = len(body)
    if msg is not None:
        event = exchange.event(
            decision=decision.action if decision else "allow",
            result=_outcome(message) if response.status < 400 else "upstream_error",
            decision_obj=decision,
        )
        if not await durable(deps, send, exchange, event, forwarded=True):
            return
        deps.sessions.note_call(exchange, denied=False, error=event["data"]["result"] != "ok")
    headers = exchange.response_headers() if response.status < 400 or exchange.era.modern else []
    ctype = content_type.encode() if content_type else None
    await _send_plain(send, response.status, body, ctype, headers)


async def _send_plain(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes | None,
    headers: list[tuple[bytes, bytes]],
) -> None:
    out = list(headers)
    if content_type:
        out.append((b"content-type", content_type))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def _fail(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    status: int,
    code: int,
    message: str,
    decision: Decision | None,
) -> None:
    if exchange.msg is not None:
        await _settle(deps, exchange, message)
        event = exchange.event(
            decision=decision.action if decision else "allow",
            result="upstream_error",
            decision_obj=decision,
            data={"error": message},
        )
        if not await durable(deps, send, exchange, event, forwarded=True):
            return
        deps.sessions.note_call(exchange, denied=False, error=True)
    await _send_plain(
        send,
        status,
        jsonrpc.dumps(
            jsonrpc.error_response(exchange.msg.id if exchange.msg else None, code, message)
        ),
        b"application/json",
        [],
    )


async def _watch_disconnect(receive: Any, gone: asyncio.Event) -> None:
    if receive is None:
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _stream_sse(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    response: UpstreamResponse,
    *,
    decision: Decision | None,
    t_upstream: float,
) -> None:
    msg = exchange.msg
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": SSE_HEADERS + exchange.response_headers(),
        }
    )
    parser = SseParser()
    chunks = response.chunks().__aiter__()
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(exchange.receive, gone))
    kill_keys = exchange.kill_keys()
    final_sent = False
    last_data = time.monotonic()
    pending: asyncio.Task[bytes] | None = None
    try:
        while not gone.is_set():
            if pending is None:
                pending = asyncio.ensure_future(chunks.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=KILL_TICK_S)
            killed = deps.runtime.local_kill(kill_keys)
            if killed is not None:
                await _send_kill_event(send, exchange, killed)
                return
            if not done:
                if time.monotonic() - last_data >= deps.keepalive_s:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b": keep-alive\n\n",
                            "more_body": True,
                        }
                    )
                    last_data = time.monotonic()
                continue
            task, pending = pending, None
            try:
                chunk = task.result()
            except StopAsyncIteration:
                break
            except UpstreamError as exc:
                if msg is not None and not final_sent:
                    await _sse_fail(deps, send, exchange, exc.code, exc.message, decision)
                    final_sent = True
                return
            last_data = time.monotonic()
            try:
                events = parser.feed(chunk)
            except SseTooLarge as exc:
                if msg is not None and not final_sent:
                    await _sse_fail(
                        deps, send, exchange, jsonrpc.UPSTREAM_PROTOCOL, str(exc), decision
                    )
                    final_sent = True
                return
            for ev in events:
                done_now = await _forward_event(deps, send, exchange, ev, decision, t_upstream)
                if done_now:
                    final_sent = True
            if final_sent and msg is not None:
                return
        if msg is not None and not final_sent and not gone.is_set():
            await _sse_fail(
                deps,
                send,
                exchange,
                jsonrpc.UPSTREAM_PROTOCOL,
                "The upstream stream ended without a response.",
                decision,
            )
        elif msg is not None and not final_sent:
            # The client left mid-stream; closing the upstream response below is the cancel.
            await record_cancelled(deps, exchange, decision, t_upstream)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
        # Closing the upstream response tells the upstream the client is gone (modern-era cancel).
        response.close()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _forward_event(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    ev: SseEvent,
    decision: Decision | None,
    t_upstream: float,
) -> bool:
    """Forward one event; True when it carried the final response of this request."""
    msg = exchange.msg
    raw = ev.raw
    is_final = False
    if msg is not None and ev.data:
        try:
            message = json.loads(ev.data)
        except ValueError:
            message = None
        if (
            isinstance(message, dict)
            and message.get("id") == msg.id
            and ("result" in message or "error" in message)
        ):
            is_final = True
            await _settle(deps, exchange, None)
            if await _rewrite_list(deps, exchange, message):
                raw = ev.encode_with_data(
                    json.dumps(message, separators=(",", ":"), ensure_ascii=False)
                )
            exchange.upstream_ms = (time.perf_counter() - t_upstream) * 1000
            exchange.response_bytes = len(raw)
            event = exchange.event(
                decision=decision.action if decision else "allow",
                result=_outcome(message),
                decision_obj=decision,
            )
            try:
                await deps.recorder.record(event)
            except audit.AuditUnavailable:
                await _send_event(
                    send,
                    jsonrpc.error_response(
                        msg.id,
                        jsonrpc.AUDIT_UNAVAILABLE,
                        "igris cannot record this call in its audit log; its result is withheld.",
                    ),
                )
                return True
            deps.sessions.note_call(exchange, denied=False, error=event["data"]["result"] != "ok")
    await send({"type": "http.response.body", "body": raw, "more_body": True})
    return is_final


async def _send_event(send: Send, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    await send(
        {
            "type": "http.response.body",
            "body": f"event: message\r\ndata: {data}\r\n\r\n".encode(),
            "more_body": True,
        }
    )


async def _sse_fail(
    deps: ProxyDeps,
    send: Send,
    exchange: Exchange,
    code: int,
    message: str,
    decision: Decision | None,
) -> None:
    await _settle(deps, exchange, message)
    event = exchange.event(
        decision=decision.action if decision else "allow",
        result="upstream_error",
        decision_obj=decision,
        data={"error": message},
    )
    try:
        await deps.recorder.record(event)
    except audit.AuditUnavailable:
        message = "igris cannot record this call in its audit log."
        code = jsonrpc.AUDIT_UNAVAILABLE
    deps.sessions.note_call(exchange, denied=False, error=True)
    await _send_event(
        send, jsonrpc.error_response(exchange.msg.id if exchange.msg else None, code, message)
    )


async def _send_kill_event(send: Send, exchange: Exchange, killed: tuple[str, str]) -> None:
    state, reason = killed
    if exchange.msg is not None:
        code = jsonrpc.SESSION_KILLED if state == "killed" else jsonrpc.SESSION_SUSPENDED
        await _send_event(
            send,
            jsonrpc.error_response(
                exchange.msg.id,
                code,
                f"This session was {state} by an operator" + (f": {reason}" if reason else "."),
                {"state": state, "reason": reason},
            ),
        )
