"""The audit writer: the only process that inserts audit events (DESIGN.md section 1).

Two inputs, one chain per organisation:

- the `PendingEvent` outbox, filled by governance services in the same transaction as the change
  they record (`drain_outbox`, synchronous, here);
- the hot-state stream `governance.events.AUDIT_STREAM`, filled by the proxy before it answers a
  call (DESIGN.md section 3, durability rule), read by compliance/audit/drainer.py.

Each batch is one database transaction (compliance/audit/store.py: lock the chain heads, skip
envelope ids already stored, chain, insert, advance the heads), then the consumed outbox rows
are deleted or the stream entries acknowledged, so a crash between the two redelivers them and
the id check drops the repeats. Stored events then go to the live feed
(compliance/audit/publish.py). `run_forever` runs both inputs and the live publisher until
stopped; `run_once` drains what is pending.

An envelope that cannot be stored as it is (not JSON, bad timestamp, NaN, a NUL character
PostgreSQL refuses, ...) is never dropped: when its organisation is known it is stored as an
`audit.malformed` event holding the raw text, so one bad event cannot block the chain. A stream
entry without a usable organisation id stays unacknowledged and is logged as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from compliance.audit.drainer import (
    CLAIM_MIN_IDLE_MS,
    GROUP,
    StreamDrainer,
    consumer_name,
    drain_stream,
)
from compliance.audit.publish import LivePublisher, Publish, live_message, publish_live
from compliance.audit.rows import Incoming
from compliance.audit.store import BatchResult, InsertMethod, db_call, store_batch

if TYPE_CHECKING:
    from governance.runtime.hotstate import HotState

# What callers have imported from here since the writer was one module.
__all__ = [
    "CLAIM_MIN_IDLE_MS",
    "GROUP",
    "LivePublisher",
    "StreamDrainer",
    "append_events",
    "consumer_name",
    "drain_outbox",
    "drain_stream",
    "live_message",
    "run_forever",
    "run_once",
]

log = logging.getLogger("igris.audit.writer")


def _stored_in_transaction(items: Sequence[Incoming], insert: InsertMethod) -> BatchResult:
    with transaction.atomic():
        return store_batch(items, insert=insert)


def append_events(
    envelopes: Iterable[dict[str, Any]], *, insert: InsertMethod = "auto", from_json: bool = False
) -> int:
    """Store envelopes directly (one transaction); returns how many were new. Tests and bench.

    `from_json=True` promises the envelopes were parsed from JSON text, as the stream's are."""
    items = [
        Incoming(payload=e, origin=f"direct:{e.get('id')}", from_json=from_json) for e in envelopes
    ]
    return len(db_call(_stored_in_transaction, items, insert).stored)


# --- the outbox -------------------------------------------------------------------------------


def _drain_outbox_batch(batch: int) -> BatchResult:
    from governance.models import PendingEvent

    with transaction.atomic():
        pending_qs = PendingEvent.objects.order_by("id")
        if connection.features.has_select_for_update_skip_locked:
            # Two writers take disjoint rows instead of storing the same events twice.
            pending_qs = pending_qs.select_for_update(skip_locked=True)
        pending = list(pending_qs[:batch])
        if not pending:
            return BatchResult()
        items = [
            Incoming(payload=p.payload, origin=f"outbox:{p.id}", org_id=p.org_id) for p in pending
        ]
        result = store_batch(items)
        # Unroutable is impossible here (the outbox row always names its org).
        PendingEvent.objects.filter(id__in=[p.id for p in pending]).delete()
    return result


def drain_outbox(batch: int = 500) -> int:
    """Move every pending outbox event into the audit table, one transaction per batch.

    Returns how many audit events were stored (repeats of stored envelopes are dropped).
    """
    total = 0
    while True:
        result = db_call(_drain_outbox_batch, batch)
        total += len(result.stored)
        if not result.consumed:
            return total


# --- the loop ---------------------------------------------------------------------------------


async def _outbox_batch(publish: Publish, batch: int) -> BatchResult:
    result: BatchResult = await sync_to_async(db_call)(_drain_outbox_batch, batch)
    await publish(result.stored)
    return result


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class _Backoff:
    def __init__(self, first_s: float = 0.5, max_s: float = 30.0) -> None:
        self.first_s, self.max_s, self.next_s = first_s, max_s, first_s

    def reset(self) -> None:
        self.next_s = self.first_s

    async def wait(self, stop: asyncio.Event) -> None:
        await _sleep(stop, self.next_s)
        self.next_s = min(self.max_s, self.next_s * 2)


async def _outbox_loop(publish: Publish, stop: asyncio.Event, batch: int, idle_s: float) -> None:
    backoff = _Backoff()
    while not stop.is_set():
        try:
            result = await _outbox_batch(publish, batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audit outbox batch failed; retrying in %.1f s", backoff.next_s)
            await backoff.wait(stop)
            continue
        backoff.reset()
        if not result.consumed:
            await _sleep(stop, idle_s)


async def _stream_loop(
    drainer: StreamDrainer,
    stop: asyncio.Event,
    block_ms: int,
    claim_every_s: float,
    linger_s: float = 0.0,
) -> None:
    # Retries against Redis are cheap, and while the writer waits the proxy's events pile up in
    # the stream: after an outage the writer is back within a few seconds, not half a minute.
    backoff = _Backoff(max_s=5.0)
    loop = asyncio.get_running_loop()
    next_claim = 0.0  # claim on start, then periodically (another writer may have died)
    while not stop.is_set():
        try:
            if loop.time() >= next_claim:
                await drainer.claim_stale()
                next_claim = loop.time() + claim_every_s
            read = await drainer.pump(block_ms=block_ms)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audit stream batch failed; retrying in %.1f s", backoff.next_s)
            # Redis may have restarted without the group (NOGROUP): make sure it exists again.
            drainer.group_lost()
            await backoff.wait(stop)
            continue
        backoff.reset()
        if 0 < read < drainer.batch and linger_s:
            # A part batch: a batch costs a transaction and a few round trips whatever its size,
            # so under a steady trickle the next one is given a moment to fill.
            await _sleep(stop, linger_s)
    try:
        await drainer.settle()  # the last batch in hand is written before the writer stops
    except Exception:
        log.exception("audit stream batch failed while stopping; it stays in the stream")


async def run_forever(
    stop_event: asyncio.Event | None = None,
    *,
    hotstate: HotState | None = None,
    batch: int = 500,
    outbox_idle_s: float = 0.1,
    stream_block_ms: int = 500,
    claim_every_s: float = CLAIM_MIN_IDLE_MS / 1000,
    claim_min_idle_ms: int = CLAIM_MIN_IDLE_MS,
    linger_ms: int | None = None,
) -> None:
    """Drain the outbox and the stream until `stop_event` is set (or the task is cancelled).

    Database and hot-state errors are logged and retried with backoff; nothing is acknowledged
    or deleted before it is committed, so retries neither lose nor duplicate events. After a
    part batch the stream loop waits `linger_ms` (IGRIS_AUDIT_WRITER_LINGER_MS) before reading
    again.
    """
    if linger_ms is None:
        linger_ms = int(settings.IGRIS_AUDIT_WRITER_LINGER_MS)
    if hotstate is None:
        from governance.runtime.hotstate import get_hotstate

        hotstate = get_hotstate()
    stop = stop_event or asyncio.Event()
    publisher = LivePublisher(hotstate)
    drainer = StreamDrainer(
        hotstate, batch=batch, claim_min_idle_ms=claim_min_idle_ms, publish=publisher.offer
    )
    log.info("audit writer %s started", drainer.consumer)
    await asyncio.gather(
        _outbox_loop(publisher.offer, stop, batch, outbox_idle_s),
        _stream_loop(drainer, stop, stream_block_ms, claim_every_s, linger_ms / 1000),
        publisher.run(stop),
    )
    log.info(
        "audit writer %s stopped: %d stream events stored, %d published live, %d not published",
        drainer.consumer,
        drainer.stored,
        publisher.published,
        publisher.dropped,
    )


async def run_once(
    *,
    hotstate: HotState | None = None,
    batch: int = 500,
    claim_min_idle_ms: int = CLAIM_MIN_IDLE_MS,
) -> tuple[int, int]:
    """Drain the outbox and the stream until both are empty: (outbox stored, stream done)."""
    if hotstate is None:
        from governance.runtime.hotstate import get_hotstate

        hotstate = get_hotstate()
    from_outbox = 0
    while True:
        result = await _outbox_batch(functools.partial(publish_live, hotstate), batch)
        from_outbox += len(result.stored)
        if not result.consumed:
            break
    from_stream = await drain_stream(hotstate, batch, claim_min_idle_ms=claim_min_idle_ms)
    return from_outbox, from_stream
