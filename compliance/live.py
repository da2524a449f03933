"""The live event feed: `GET /api/v1/events` (Server-Sent Events) and `/ws/events` (websocket).

Only persisted events are sent: the audit writer publishes each stored event to the hot-state
channel `live:<org_id>` after commit, and a reconnecting client's missed events come from the
audit table itself, so the feed shows exactly what the hash chain holds, in `seq` order, scoped to
the caller's organisation.

Delivery without gap or duplicate (per connection): subscribe to the organisation's channel
first, buffering what arrives; read the chain head; replay `seq > since` from the table up to that
head in chunks; then take the buffered and live events, skipping `seq` already delivered. Pub/sub
is at most once (a writer's publish may fail, its bounded publisher may drop), so a live event
whose `seq` is not the next one fills the gap from the table first: every `seq` below a stored
event is committed. A live buffer that overflows while the table is being read is no loss either
(the table has those events; the replay goes on to the new head).

Per-process fan-out (`LiveHub`): one subscription per organisation, shared by that process's
connections, instead of one Redis connection per subscriber. Slow consumers: each connection
buffers at most `IGRIS_LIVE_QUEUE_LIMIT` (1,000) events; past that it gets a final `overflow`
event (`{"reason": "slow consumer", "last_seq": n}`) and is closed, so memory stays bounded; the
client resumes from `last_seq`. A send the client does not take within `IGRIS_LIVE_SEND_TIMEOUT_S`
ends the connection too; one with nothing sent for `IGRIS_LIVE_HEARTBEAT_S` gets a heartbeat.

Authentication: `Authorization: Bearer ig_…` with scope `read` (never a key in the URL: URLs end
up in logs). Websockets also accept the console session cookie when the `Origin` is this site's
(browsers cannot set headers on a websocket; the Origin check stops cross-site pages from riding
the cookie). Filters: `types` (`tool_call` = tool_call and mcp_request, `anomaly` = anomaly and
anomaly.*, `session_update` = session.*, `policy_change` = policy.*, any other audit type by
name; without `types` every event is sent), `server=<slug>`, `session=<id>`. Resume with
`Last-Event-ID` or `?since=<seq>`.

Both are plain ASGI callables (like proxy/app.py), not Channels consumers: neither needs Django's
request cycle, a channel layer or Channels' consumer dispatch, and sharing one driver
(`LiveStream`) keeps the SSE and websocket semantics identical. The ORM runs in worker threads,
whose connections are closed after each query.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.http.cookie import parse_cookie

from compliance.models import AuditEvent, ChainHead
from governance.api.errors import PROBLEM_CONTENT_TYPE, problem_body
from governance.hotstate import get_hotstate
from governance.keys import KeyError_, bearer_token, get_verifier

log = logging.getLogger("igris.live")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Defaults of the IGRIS_LIVE_* settings (read per connection, so tests can shorten them).
HEARTBEAT_S = 15.0
QUEUE_LIMIT = 1000
BACKLOG_CHUNK = 500
SEND_TIMEOUT_S = 30.0
RETRY_MS = 2000
MAX_TYPES = 20
TIMER_SLACK_S = 0.001  # libuv's timers tick in milliseconds: one may fire that much early


# --- events and filters -------------------------------------------------------------------------


def kind_of(type_: str) -> str:
    """The feed's event name for an audit type."""
    if type_ in ("tool_call", "mcp_request"):
        return "tool_call"
    if type_ == "anomaly" or type_.startswith("anomaly."):
        return "anomaly"
    if type_.startswith("session."):
        return "session_update"
    if type_.startswith("policy."):
        return "policy_change"
    return type_


_KIND_QUERIES = {
    "tool_call": Q(type__in=("tool_call", "mcp_request")),
    "anomaly": Q(type="anomaly") | Q(type__startswith="anomaly."),
    "session_update": Q(type__startswith="session."),
    "policy_change": Q(type__startswith="policy."),
}


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One stored event as the feed sends it; rendered once per process, shared by connections."""

    seq: int
    type: str
    kind: str
    server: str | None
    session: str | None
    payload: str  # the JSON sent as SSE data and as the websocket message
    frame: bytes  # the SSE event


def live_event(envelope: dict[str, Any]) -> LiveEvent | None:
    """From `AuditEvent.as_envelope()` / the writer's live message; None if it is not one."""
    seq, type_ = envelope.get("seq"), envelope.get("type")
    if type(seq) is not int or not isinstance(type_, str):
        return None
    data = envelope["data"] if isinstance(envelope.get("data"), dict) else {}
    kind = kind_of(type_)
    payload = json.dumps({"event": kind, **envelope}, separators=(",", ":"))
    server, session = data.get("server_slug"), data.get("session_id")
    return LiveEvent(
        seq=seq,
        type=type_,
        kind=kind,
        server=server if isinstance(server, str) else None,
        session=session if isinstance(session, str) else None,
        payload=payload,
        frame=f"id: {seq}\nevent: {kind}\ndata: {payload}\n\n".encode(),
    )


@dataclass(frozen=True, slots=True)
class FeedFilter:
    kinds: frozenset[str] | None = None
    server: str | None = None
    session: str | None = None

    def matches(self, event: LiveEvent) -> bool:
        if self.kinds is not None and event.kind not in self.kinds and event.type not in self.kinds:
            return False
        if self.server is not None and event.server != self.server:
            return False
        return self.session is None or event.session == self.session

    def query(self) -> Q:
        """The same filter for the audit table (the replay)."""
        q = Q()
        if self.kinds is not None:
            any_kind = Q(pk__in=[])
            for kind in sorted(self.kinds):
                any_kind |= _KIND_QUERIES.get(kind, Q(type=kind))
            q &= any_kind
        if self.server is not None:
            q &= Q(server_slug=self.server)
        if self.session is not None:
            q &= Q(session_id=self.session)
        return q


# --- the audit table ----------------------------------------------------------------------------


def _closing(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run in a worker thread and close its connection: threads live outside the request cycle."""

    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _head(org_id: str) -> int:
    # Updated in the transaction that stores the events: every seq up to it is committed.
    return ChainHead.objects.filter(org_id=org_id).values_list("seq", flat=True).first() or 0


def _stored(org_id: str, after: int, upto: int, q: Q, limit: int) -> list[LiveEvent]:
    rows = AuditEvent.objects.filter(q, org_id=org_id, seq__gt=after, seq__lte=upto).order_by(
        "seq"
    )[:limit]
    return [event for row in rows if (event := live_event(row.as_envelope())) is not None]


head_seq = _closing(_head)
stored_events = _closing(_stored)


# --- fan-out ------------------------------------------------------------------------------------


class Feed:
    """One connection's buffer of live events, filled by the hub, drained by its LiveStream.

    A wait leaves one future and no timer behind (the heartbeat is the SendClock's): the ~7
    objects per connection that each wake-up left waiting (Event future, timeout, timer handle,
    coroutines) drove the collector into full collections of 100+ ms (bench/live_feed.py)."""

    def __init__(self, org_id: str, limit: int) -> None:
        self.org_id = org_id
        self.limit = limit
        self.replaying = True
        self.dropped = False  # overflowed while replaying: harmless, the table has them
        self.overflowed = False  # overflowed while live: the connection ends
        self.failed = False  # the hub's subscription broke
        self.beat = False  # nothing was sent for a heartbeat interval
        self._items: collections.deque[LiveEvent] = collections.deque()
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, event: LiveEvent) -> None:
        if self.overflowed or self.failed:
            return
        if len(self._items) >= self.limit:
            self._items.clear()
            if self.replaying:
                self.dropped = True
            else:
                self.overflowed = True
                self._wake()
            return
        self._items.append(event)
        self._wake()

    def fail(self) -> None:
        self.failed = True
        self._wake()

    def heartbeat(self) -> None:
        self.beat = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wait(self) -> asyncio.Future[None] | None:
        """None if there is something to handle, else a future to await until there is."""
        if self._items or self.beat or self.overflowed or self.failed:
            return None
        self._waiter = self._loop.create_future()
        return self._waiter

    def take(self) -> list[LiveEvent]:
        batch = list(self._items)
        self._items.clear()
        return batch


class SendClock:
    """One connection's send timeout and heartbeat, on one timer re-armed lazily.

    `asyncio.timeout` around every send and every wait armed and cancelled two timers per event
    per connection (a third of the fan-out's CPU). Here a send only notes when it started and
    ended; the timer, when it fires, works out from those notes whether a send is stuck (its
    task is cancelled and the send raises TimeoutError, as under `asyncio.timeout`), a
    heartbeat is due (nothing sent for `heartbeat_s`), or it is early and re-arms itself."""

    def __init__(self, heartbeat_s: float, timeout_s: float) -> None:
        self.heartbeat_s, self.timeout_s = heartbeat_s, timeout_s
        self._loop = asyncio.get_running_loop()
        self._on_idle: Callable[[], None] | None = None
        self._last_sent = self._loop.time()
        self._sending_since: float | None = None
        self._sender: asyncio.Task[Any] | None = None
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf

    async def send(self, send: Send, message: dict[str, Any]) -> None:
        self._sending_since = self._loop.time()
        self._sender, self._expired = asyncio.current_task(), False
        self._arm(self._sending_since + self.timeout_s)  # a no-op when an earlier one is set
        try:
            await send(message)
        except asyncio.CancelledError:
            if self._expired and self._sender is not None and self._sender.uncancel() == 0:
                raise TimeoutError("the client did not take the stream's data in time") from None
            raise
        finally:
            self._sending_since = None
            self._last_sent = self._loop.time()
            if self._on_idle is not None:
                self._arm(self._last_sent + self.heartbeat_s)  # after a long send, if needed

    def heartbeats(self, on_idle: Callable[[], None]) -> None:
        """Call `on_idle` whenever nothing was sent for `heartbeat_s`, until `stop`."""
        self._on_idle = on_idle
        self._arm(self._last_sent + self.heartbeat_s)

    def stop(self) -> None:
        self._on_idle = None
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._at = None, math.inf

    def _arm(self, at: float) -> None:
        if at >= self._at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._at = self._loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        self._handle, self._at = None, math.inf
        now = self._loop.time() + TIMER_SLACK_S
        if self._sending_since is not None:
            due = self._sending_since + self.timeout_s
            if now < due:
                self._arm(due)
            elif self._sender is not None and not self._sender.done():
                self._expired = True
                self._sender.cancel()
            return
        if self._on_idle is None:
            return
        due = self._last_sent + self.heartbeat_s
        if now < due:
            self._arm(due)
            return
        self._on_idle()
        self._arm(self._loop.time() + self.heartbeat_s)


class _Channel:
    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        self.feeds: set[Feed] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None


class LiveHub:
    """One subscription to `live:<org_id>` per organisation in this process, fanned out to the
    feeds of that organisation; it ends when its last feed leaves."""

    def __init__(self) -> None:
        self.channels: dict[str, _Channel] = {}

    async def join(self, feed: Feed) -> None:
        """Returns once the subscription is confirmed: nothing published later is missed."""
        channel = self.channels.get(feed.org_id)
        if channel is None:
            channel = self.channels[feed.org_id] = _Channel(feed.org_id)
            channel.task = asyncio.create_task(self._run(channel), name=f"live:{feed.org_id}")
        channel.feeds.add(feed)
        try:
            await asyncio.shield(channel.ready)
        except BaseException:
            self.leave(feed)
            raise

    def leave(self, feed: Feed) -> None:
        channel = self.channels.get(feed.org_id)
        if channel is None or feed not in channel.feeds:
            return
        channel.feeds.discard(feed)
        if not channel.feeds:
            del self.channels[feed.org_id]
            if channel.task is not None:
                channel.task.cancel()

    async def _run(self, channel: _Channel) -> None:
        try:
            async with get_hotstate().subscribe(f"live:{channel.org_id}") as subscription:
                channel.ready.set_result(None)
                async for _name, data in subscription:
                    event = _decode(data)
                    if event is not None:
                        for feed in tuple(channel.feeds):
                            feed.offer(event)
            raise ConnectionError("the live subscription ended")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("live feed of %s lost its subscription: %s", channel.org_id, exc)
            if not channel.ready.done():
                channel.ready.set_exception(exc)
            for feed in tuple(channel.feeds):
                feed.fail()
        finally:
            if self.channels.get(channel.org_id) is channel:
                del self.channels[channel.org_id]


def _decode(data: bytes) -> LiveEvent | None:
    try:
        envelope = json.loads(data)
    except ValueError:
        return None
    return live_event(envelope) if isinstance(envelope, dict) else None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub] = weakref.WeakKeyDictionary()


def get_hub() -> LiveHub:
    """This event loop's hub (the hot-state connections belong to their loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = LiveHub()
    return hub


# --- one connection -----------------------------------------------------------------------------


class Sink(Protocol):
    clock: SendClock  # times every send of the sink

    async def events(self, events: Sequence[LiveEvent]) -> None: ...

    async def heartbeat(self) -> None: ...

    async def overflow(self, last_seq: int) -> None: ...


@dataclass(frozen=True)
class Options:
    heartbeat_s: float
    queue_limit: int
    chunk: int
    send_timeout_s: float

    @classmethod
    def from_settings(cls) -> Options:
        return cls(
            heartbeat_s=float(getattr(settings, "IGRIS_LIVE_HEARTBEAT_S", HEARTBEAT_S)),
            queue_limit=int(getattr(settings, "IGRIS_LIVE_QUEUE_LIMIT", QUEUE_LIMIT)),
            chunk=int(getattr(settings, "IGRIS_LIVE_BACKLOG_CHUNK", BACKLOG_CHUNK)),
            send_timeout_s=float(getattr(settings, "IGRIS_LIVE_SEND_TIMEOUT_S", SEND_TIMEOUT_S)),
        )


class LiveStream:
    """Replay then live for one connection; `pos` is the last seq handled (sent or filtered)."""

    def __init__(
        self,
        org_id: str,
        since: int | None,
        feed_filter: FeedFilter,
        sink: Sink,
        options: Options,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.org_id = org_id
        self.since = since
        self.filter = feed_filter
        self.sink = sink
        self.options = options
        self.still_allowed = still_allowed
        self.feed = Feed(org_id, options.queue_limit)
        self.head = 0
        self.pos = 0

    async def open(self) -> None:
        """Subscribe, then read the chain head; raises if the hot state or database is down."""
        await get_hub().join(self.feed)  # before the table is read: see the module docstring
        try:
            self.head = await head_seq(self.org_id)
        except BaseException:
            self.close()
            raise
        self.pos = self.head if self.since is None else min(self.since, self.head)

    def close(self) -> None:
        self.sink.clock.stop()
        get_hub().leave(self.feed)

    async def run(self) -> None:
        """Replay, then follow the live events until overflow, failure or cancellation."""
        try:
            await self._catch_up(self.head)
            await self._live()
        finally:
            self.close()

    async def _catch_up(self, head: int) -> None:
        self.feed.replaying = True
        while True:
            self.feed.dropped = False
            await self._replay(head)
            if not self.feed.dropped:
                break
            head = await head_seq(self.org_id)
        self.feed.replaying = False

    async def _replay(self, upto: int) -> None:
        """Send the stored events in (pos, upto] that pass the filter, in chunks."""
        query = self.filter.query()
        while self.pos < upto:
            events = await stored_events(self.org_id, self.pos, upto, query, self.options.chunk)
            if events:
                await self.sink.events(events)
            if len(events) < self.options.chunk:
                self.pos = upto
                return
            self.pos = events[-1].seq

    async def _live(self) -> None:
        loop = asyncio.get_running_loop()
        feed = self.feed
        next_check = loop.time() + self.options.heartbeat_s
        self.sink.clock.heartbeats(feed.heartbeat)
        while True:
            waiter = feed.wait()
            if waiter is not None:
                await waiter
            if feed.overflowed:
                await self.sink.overflow(self.pos)
                return
            if feed.failed:
                return
            if self.still_allowed is not None and loop.time() >= next_check:
                # A revoked or expired key loses its feed within a heartbeat interval.
                if not await self.still_allowed():
                    return
                next_check = loop.time() + self.options.heartbeat_s
            batch = feed.take()
            if feed.beat:
                feed.beat = False
                if not batch:
                    await self.sink.heartbeat()
                    continue
            out: list[LiveEvent] = []
            for event in batch:
                if event.seq <= self.pos:
                    continue  # replayed already, or delivered twice by pub/sub
                if event.seq > self.pos + 1:
                    if out:
                        await self.sink.events(out)
                        out = []
                    feed.replaying = True
                    await self._replay(event.seq - 1)
                    feed.replaying = False
                if self.filter.matches(event):
                    out.append(event)
                self.pos = event.seq
            if out:
                await self.sink.events(out)
            if feed.dropped:
                await self._catch_up(await head_seq(self.org_id))


async def _serve(run: Awaitable[None], receive: Receive, disconnect: str) -> bool:
    """Run the stream until it ends or the client leaves; True if it ended by itself."""
    stream = asyncio.ensure_future(run)

    async def watch() -> None:
        while (await receive())["type"] != disconnect:
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({stream, watcher}, return_when=asyncio.FIRST_COMPLETED)
        by_itself = stream.done() and not watcher.done()
    finally:
        for task in (stream, watcher):
            task.cancel()
        results = await asyncio.gather(stream, watcher, return_exceptions=True)
    error = results[0]
    if isinstance(error, Exception) and not isinstance(error, TimeoutError | OSError):
        log.error("live feed stream failed", exc_info=error)
    return by_itself


# --- requests -----------------------------------------------------------------------------------


class _Problem(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def body(self) -> bytes:
        return json.dumps(problem_body(self.status, self.code, self.detail, **self.extra)).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()), (b"cache-control", b"no-store")]
        if self.status == 401:
            out.append((b"www-authenticate", b'Bearer realm="igris"'))
        return out


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        out[key] = (
            f"{out[key]}, {value.decode('latin-1')}" if key in out else value.decode("latin-1")
        )
    return out


def _since(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise _Problem(400, "invalid", f"{name} must be a sequence number (a whole number).")
    return int(value)


def _parameters(scope: Scope, headers: dict[str, str]) -> tuple[FeedFilter, int | None]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "token" in query or "access_token" in query:
        raise _Problem(
            400,
            "invalid",
            "Keys are not accepted in the URL (URLs are logged): send "
            "'Authorization: Bearer ig_…'.",
        )
    kinds = None
    if "types" in query:
        names = [n.strip() for v in query["types"] for n in v.split(",") if n.strip()]
        if not names or len(names) > MAX_TYPES or any(len(n) > 100 for n in names):
            raise _Problem(400, "invalid", f"types lists 1-{MAX_TYPES} event types.")
        kinds = frozenset(names)
    server = query.get("server", [None])[-1]
    session = query.get("session", [None])[-1]
    if (server is not None and not 0 < len(server) <= 64) or (
        session is not None and not 0 < len(session) <= 128
    ):
        raise _Problem(400, "invalid", "server is 1-64 characters, session 1-128.")
    # The browser's automatic reconnection sends Last-Event-ID while the URL keeps its `since`.
    since = _since(headers.get("last-event-id"), "Last-Event-ID")
    if since is None:
        since = _since(query.get("since", [None])[-1], "since")
    return FeedFilter(kinds, server, session), since


async def _key(headers: dict[str, str]) -> tuple[str, Callable[[], Awaitable[bool]]]:
    """(org id, re-check) for `Authorization: Bearer ig_…` with scope read."""
    header = headers.get("authorization")
    if not header:
        raise _Problem(
            401, "unauthenticated", "Send 'Authorization: Bearer ig_…'.", reason="missing"
        )
    token = bearer_token(header)
    if token is None:
        raise _Problem(
            401, "unauthenticated", "Use 'Authorization: Bearer ig_…'.", reason="malformed"
        )
    try:
        verified = await get_verifier().verify(token)
    except KeyError_ as exc:
        raise _Problem(401, "unauthenticated", exc.message, reason=exc.reason) from None
    if "read" not in verified.scopes:
        raise _Problem(
            403, "permission_denied", "This API key lacks the read scope.", reason="scope"
        )

    async def still_allowed() -> bool:
        # Cached; a revocation evicts it everywhere through the hot-state flags.
        try:
            await get_verifier().verify(token)
        except KeyError_:
            return False
        return True

    return verified.org_id, still_allowed


def _same_origin(origin: str | None, host: str | None) -> bool:
    if not origin or not host:
        return False
    if origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", ()):
        return True
    # Host and port only: behind a TLS-terminating proxy the scope says ws while the page is https.
    return urlsplit(origin).netloc.lower() == host.strip().lower()


def _session_org(session_key: str) -> str:
    from django.contrib.auth import get_user

    from governance.middleware import current_membership
    from governance.permissions import Action, role_can

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    request: Any = SimpleNamespace(session=store)
    request.user = get_user(request)
    if not request.user.is_authenticated:
        raise _Problem(
            401, "unauthenticated", "The console session is not valid.", reason="session"
        )
    membership = current_membership(request)
    if membership is None or not role_can(membership.role, Action.AUDIT_READ):
        raise _Problem(
            403, "permission_denied", "Your role may not read the audit log.", reason="role"
        )
    return str(membership.org_id)


async def _websocket_principal(
    headers: dict[str, str],
) -> tuple[str, Callable[[], Awaitable[bool]] | None]:
    if "authorization" in headers:
        return await _key(headers)
    session_key = parse_cookie(headers.get("cookie", "")).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        raise _Problem(
            401,
            "unauthenticated",
            "Send 'Authorization: Bearer ig_…' or sign in to the console.",
            reason="missing",
        )
    if not _same_origin(headers.get("origin"), headers.get("host")):
        raise _Problem(
            403,
            "permission_denied",
            "A console session is accepted only from this site's own pages.",
            reason="origin",
        )
    return await _closing(_session_org)(session_key), None


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


async def _open(stream: LiveStream) -> None:
    try:
        await stream.open()
    except Exception as exc:
        log.warning("live feed unavailable: %s", exc)
        raise _Problem(
            503, "unavailable", "The live feed is unavailable; retry in a moment."
        ) from exc


async def _refuse_http(send: Send, problem: _Problem) -> None:
    body = problem.body()
    headers = [*problem.headers(), (b"content-length", str(len(body)).encode())]
    if problem.status == 405:
        headers.append((b"allow", b"GET"))
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def sse_application(scope: Scope, receive: Receive, send: Send) -> None:
    """`GET /api/v1/events`: text/event-stream, `id: <seq>`, `event: <kind>`, JSON data."""
    headers = _headers(scope)
    options = Options.from_settings()
    sink = _SseSink(send, SendClock(options.heartbeat_s, options.send_timeout_s))
    try:
        if scope.get("method") != "GET":
            raise _Problem(405, "method_not_allowed", "Use GET.")
        org_id, still_allowed = await _key(headers)
        feed_filter, since = _parameters(scope, headers)
        stream = LiveStream(org_id, since, feed_filter, sink, options, still_allowed)
        await _open(stream)
    except _Problem as problem:
        await _refuse_http(send, problem)
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
    if await _serve(stream.run(), receive, "http.disconnect"):
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
    headers = _headers(scope)
    options = Options.from_settings()
    sink = _WebsocketSink(send, SendClock(options.heartbeat_s, options.send_timeout_s))
    try:
        org_id, still_allowed = await _websocket_principal(headers)
        feed_filter, since = _parameters(scope, headers)
        stream = LiveStream(org_id, since, feed_filter, sink, options, still_allowed)
        await _open(stream)
    except _Problem as problem:
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
    if await _serve(stream.run(), receive, "websocket.disconnect"):
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await send({"type": "websocket.close", "code": sink.close_code})
