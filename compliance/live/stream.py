"""One connection's stream: the replay from the audit table, then the live events.

Delivery without gap or duplicate (per connection): subscribe to the organisation's channel
first, buffering what arrives; read the chain head; replay `seq > since` from the table up to that
head in chunks; then take the buffered and live events, skipping `seq` already delivered. Pub/sub
is at most once (a writer's publish may fail, its bounded publisher may drop), so a live event
whose `seq` is not the next one fills the gap from the table first: every `seq` below a stored
event is committed. A live buffer that overflows while the table is being read is no loss either
(the table has those events; the replay goes on to the new head).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from compliance.live.clock import SendClock
from compliance.live.events import FeedFilter, LiveEvent, head_seq, stored_events
from compliance.live.fanout import Feed, get_hub

# Defaults of the IGRIS_LIVE_* settings (read per connection, so tests can shorten them).
HEARTBEAT_S = 15.0
QUEUE_LIMIT = 1000
BACKLOG_CHUNK = 500
SEND_TIMEOUT_S = 30.0


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
