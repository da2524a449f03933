"""The two Channels consumers: `GET /api/v1/events` (Server-Sent Events) and `/ws/events`.

Each consumer answers its first message (the request, or the websocket handshake) with a problem
or with the stream, then runs the stream in a task of its own while Channels' dispatch loop goes
on reading the connection: the disconnect handler is what ends a stream whose client left. A
stream that ends by itself (overflow, a revoked key, a send the client did not take) closes the
response or the socket; the server then reports the disconnect (ASGI: `receive` after the answer
is complete) and the consumer stops the same way.

No channel layer: the events come from the per-process hub (`fanout.get_hub`), which renders
each event once for all of the process's connections (bench/live_fanout.py has the figures
against a channels-redis group).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

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
from compliance.live.stream import LiveStream, Options

log = logging.getLogger("igris.live")

RETRY_MS = 2000
CLOSE_NORMAL = 1000
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 registry: the server is overloaded (our slow consumer)
FINAL_SEND_S = 1.0  # the closing message to a client that may be gone


async def _follow(stream: LiveStream, finish: Callable[[], Awaitable[None]]) -> None:
    """Run the stream; when it ends by itself, `finish` the response or the socket."""
    try:
        await stream.run()
    except (TimeoutError, OSError):
        pass  # a client that stopped reading or a broken connection: nothing to report
    except Exception:
        log.exception("live feed stream failed")
    with contextlib.suppress(Exception):
        async with asyncio.timeout(FINAL_SEND_S):
            await finish()


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _Streaming:
    """What both consumers share: the stream's task, ended with the consumer whatever ends it."""

    running: asyncio.Task[None] | None = None

    def start(self, stream: LiveStream, finish: Callable[[], Awaitable[None]]) -> None:
        self.running = asyncio.create_task(_follow(stream, finish), name="live feed")

    async def stop(self) -> None:
        await _stop(self.running)

    def abandon(self) -> None:
        # The consumer was cancelled (server shutdown) without a disconnect message: the task
        # must not outlive it holding the hub's subscription.
        if self.running is not None:
            self.running.cancel()


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


class EventStreamConsumer(_Streaming, AsyncHttpConsumer):
    """`GET /api/v1/events`: text/event-stream, `id: <seq>`, `event: <kind>`, JSON data."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.abandon()

    async def http_request(self, message: dict[str, Any]) -> None:
        # Not AsyncHttpConsumer.handle: it waits for the whole body and stops the consumer when
        # it returns, and this answer outlives the request. A GET has no body to wait for.
        if self.running is not None:
            return
        headers = scope_headers(self.scope)
        options = Options.from_settings()
        sink = _SseSink(self.base_send, SendClock(options.heartbeat_s, options.send_timeout_s))
        try:
            if self.scope.get("method") != "GET":
                raise Problem(405, "method_not_allowed", "Use GET.")
            org_id, still_allowed = await key_principal(headers)
            feed_filter, since = parameters(self.scope, headers)
            stream = LiveStream(org_id, since, feed_filter, sink, options, still_allowed)
            await open_stream(stream)
        except Problem as problem:
            await refuse_http(self.base_send, problem)
            raise StopConsumer() from None
        try:
            await self.send_headers(
                status=200,
                headers=[
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # proxies must not buffer the stream
                ],
            )
            await sink.retry(RETRY_MS)
        except BaseException:
            stream.close()
            raise
        self.start(stream, lambda: self.send_body(b""))

    async def disconnect(self) -> None:
        await self.stop()


# --- websocket ------------------------------------------------------------------------------------


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


class EventSocketConsumer(_Streaming, AsyncWebsocketConsumer):
    """`/ws/events`: one JSON text message per event, the same payload as the SSE data.

    Messages from the client are read (so a disconnect is seen) and ignored."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.abandon()

    async def connect(self) -> None:
        headers = scope_headers(self.scope)
        options = Options.from_settings()
        sink = _WebsocketSink(
            self.base_send, SendClock(options.heartbeat_s, options.send_timeout_s)
        )
        try:
            org_id, still_allowed = await websocket_principal(headers)
            feed_filter, since = parameters(self.scope, headers)
            stream = LiveStream(org_id, since, feed_filter, sink, options, still_allowed)
            await open_stream(stream)
        except Problem as problem:
            await self._refuse(problem)
            raise StopConsumer() from None
        try:
            await self.accept()
        except BaseException:
            stream.close()
            raise
        # The code is read when the stream has ended: 1013 after an overflow.
        self.start(stream, lambda: self.close(code=sink.close_code))

    async def _refuse(self, problem: Problem) -> None:
        if "websocket.http.response" in self.scope.get("extensions", {}):
            # ASGI's denial response extension: the handshake gets the real status and problem.
            body = problem.body()
            start = {
                "type": "websocket.http.response.start",
                "status": problem.status,
                "headers": [*problem.headers(), (b"content-length", str(len(body)).encode())],
            }
            await self.base_send(start)
            await self.base_send({"type": "websocket.http.response.body", "body": body})
        else:
            await self.close(code=4000 + problem.status)

    async def disconnect(self, code: int) -> None:
        await self.stop()
