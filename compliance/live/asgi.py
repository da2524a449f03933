"""The two ASGI applications: `GET /api/v1/events` (Server-Sent Events) and `/ws/events`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence

from compliance.live.clock import Receive, Scope, Send, SendClock
from compliance.live.events import LiveEvent
from compliance.live.request import (
    Problem,
    key_principal,
    open_stream,
    parameters,
    refuse_http,
    scope_headers,
    websocket_principal,
)
from compliance.live.stream import LiveStream, Options, serve

RETRY_MS = 2000


# --- Server-Sent Events ---------------------------------------------------------------------------


class _SseSink:
    def __init__(self, send: Send, clock: SendClock) -> None:
        self._send, self.clock = send, clock

    async def _body(self, body: bytes) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": True}
        await self.clock.send(self._send, message)

    async def events(self, events: Sequence[LiveEvent]) -> None:
        await self._body(events[0].frame if len(events) == 1 else b"".join(e.frame for e in events))

    async def heartbeat(self) -> None:
        await self._body(b": heartbeat\n\n")

    async def retry(self, milliseconds: int) -> None:
        await self._body(f"retry: {milliseconds}\n\n".encode())

    async def overflow(self, last_seq: int) -> None:
        data = json.dumps({"reason": "slow consumer", "last_seq": last_seq})
        await self._body(f"event: overflow\ndata: {data}\n\n".encode())


async def sse_application(scope: Scope, receive: Receive, send: Send) -> None:
    """`GET /api/v1/events`: text/event-stream, `id: <seq>`, `event: <kind>`, JSON data."""
    headers = scope_headers(scope)
    options = Options.from_settings()
    sink = _SseSink(send, SendClock(options.heartbeat_s, options.send_timeout_s))
    try:
        if scope.get("method") != "GET":
            raise Problem(405, "method_not_allowed", "Use GET.")
        org_id, still_allowed = await key_principal(headers)
        feed_filter, since = parameters(scope, headers)
        stream = LiveStream(org_id, since, feed_filter, sink, options, still_allowed)
        await open_stream(stream)
    except Problem as problem:
        await refuse_http(send, problem)
        return
    try:
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),  # proxies must not buffer the stream
            ],
        }
        await send(start)
        await sink.retry(RETRY_MS)
    except BaseException:
        stream.close()
        raise
    if await serve(stream.run(), receive, "http.disconnect"):
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


# --- websocket ------------------------------------------------------------------------------------

CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 registry: the server is overloaded (our slow consumer)


class _WebsocketSink:
    def __init__(self, send: Send, clock: SendClock) -> None:
        self._send, self.clock = send, clock
        self.close_code = CLOSE_NORMAL

    async def _text(self, text: str) -> None:
        await self.clock.send(self._send, {"type": "websocket.send", "text": text})

    async def events(self, events: Sequence[LiveEvent]) -> None:
        for event in events:
            await self._text(event.payload)

    async def heartbeat(self) -> None:
        await self._text('{"event":"heartbeat"}')

    async def overflow(self, last_seq: int) -> None:
        self.close_code = CLOSE_TRY_AGAIN_LATER
        message = {"event": "overflow", "reason": "slow consumer", "last_seq": last_seq}
        await self._text(json.dumps(message))


async def websocket_application(scope: Scope, receive: Receive, send: Send) -> None:
    """`/ws/events`: one JSON text message per event, the same payload as the SSE data."""
    if (await receive())["type"] != "websocket.connect":
        return
    headers = scope_headers(scope)
    options = Options.from_settings()
    sink = _WebsocketSink(send, SendClock(options.heartbeat_s, options.send_timeout_s))
    try:
        org_id, still_allowed = await websocket_principal(headers)
        feed_filter, since = parameters(scope, headers)
        stream = LiveStream(org_id, since, feed_filter, sink, options, still_allowed)
        await open_stream(stream)
    except Problem as problem:
        if "websocket.http.response" in scope.get("extensions", {}):
            # ASGI's denial response extension: the handshake gets the real status and problem.
            body = problem.body()
            start = {
                "type": "websocket.http.response.start",
                "status": problem.status,
                "headers": [*problem.headers(), (b"content-length", str(len(body)).encode())],
            }
            await send(start)
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 4000 + problem.status})
        return
    try:
        await send({"type": "websocket.accept"})
    except BaseException:
        stream.close()
        raise
    if await serve(stream.run(), receive, "websocket.disconnect"):
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await send({"type": "websocket.close", "code": sink.close_code})
