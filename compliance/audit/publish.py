"""Stored audit events to the live feed: `live:<org_id>` on the hot state's pub/sub.

At most once: the audit table is the record, and the live feed replays from it. `publish_live`
publishes inline (`drain_stream`, `run_once`); `LivePublisher` does it from its own bounded task
in `run_forever`, so one PUBLISH round trip per event never holds up the durable path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from compliance.models import audit_envelope

if TYPE_CHECKING:
    from governance.runtime.hotstate import HotState

log = logging.getLogger("igris.audit.writer")


def live_message(row: dict[str, Any]) -> bytes:
    """What the live feed gets: the event as `AuditEvent.as_envelope()` shows it (seq, hash)."""
    return orjson.dumps(audit_envelope(row))


Publish = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]


async def publish_live(hotstate: HotState, rows: Sequence[dict[str, Any]]) -> None:
    """Publish stored events to `live:<org_id>` now; failures are logged, never raised."""
    if not rows:
        return
    try:
        await hotstate.publish_many([(f"live:{row['org_id']}", live_message(row)) for row in rows])
    except Exception:
        log.warning("live feed publish failed for %d events", len(rows), exc_info=True)


class LivePublisher:
    """Publishes stored events to the live feed from its own task, in order.

    Publishing would otherwise stall the durable path; events waiting in the queue go out in
    pipelined batches (one round trip each). The queue is bounded: when the feed cannot keep up,
    newer events are dropped from the feed (counted and logged), never from the audit table.
    """

    def __init__(self, hotstate: HotState, *, limit: int = 50_000) -> None:
        self.hotstate = hotstate
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(limit)
        self.published = 0
        self.dropped = 0

    async def offer(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            try:
                self.queue.put_nowait(row)
            except asyncio.QueueFull:
                self.dropped += 1
                if self.dropped % 10_000 == 1:
                    log.warning("live feed behind: %d events not published", self.dropped)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set and the queue is empty."""
        while not (stop.is_set() and self.queue.empty()):
            try:
                rows = [await asyncio.wait_for(self.queue.get(), 0.2)]
            except TimeoutError:
                continue
            while len(rows) < 500 and not self.queue.empty():
                rows.append(self.queue.get_nowait())
            try:
                await self.hotstate.publish_many(
                    [(f"live:{row['org_id']}", live_message(row)) for row in rows]
                )
                self.published += len(rows)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live feed publish failed", exc_info=True)
