"""The audit writer: the only process that inserts audit events (DESIGN.md section 1).

Two inputs, one chain per organisation:

- the `PendingEvent` outbox, filled by governance services in the same transaction as the change
  they record (`drain_outbox`, synchronous);
- the hot-state stream `governance.events.AUDIT_STREAM`, filled by the proxy before it answers a
  call (DESIGN.md section 3, durability rule); read with consumer group "auditwriter", each entry's
  field "event" holding the JSON envelope (`drain_stream`, asynchronous).

Each batch is one database transaction: `compliance.audit.store.store_batch` (lock the chain
heads, skip envelope ids already stored, chain, insert, advance the heads), then delete the
consumed outbox rows. Stream entries are acknowledged only after that commit, so a crash
between the two redelivers them and the id check drops the repeats. After commit each stored event
is published to `live:<org_id>` for the live feed (at most once; the table is the record):
inline by `drain_stream`/`run_once`, from a separate bounded task (`LivePublisher`) in
`run_forever`, so one PUBLISH round trip per event never holds up the durable path.

An envelope that cannot be stored as it is (not JSON, bad timestamp, NaN, a NUL character
PostgreSQL refuses, ...) is never dropped: when its organisation is known it is stored as an
`audit.malformed` event holding the raw text, so one bad event cannot block the chain. A stream
entry without a usable organisation id stays unacknowledged and is logged as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from compliance.audit.store import (
    BatchResult,
    Incoming,
    InsertMethod,
    PreparedBatch,
    prepare_batch,
    store_batch,
    write_batch,
)
from compliance.models import audit_envelope
from governance.events import AUDIT_STREAM

if TYPE_CHECKING:
    from governance.hotstate import HotState, StreamEntry

log = logging.getLogger("igris.audit.writer")

GROUP = "auditwriter"
# An entry another consumer read but has not acknowledged for this long is presumed orphaned
# (its writer died) and taken over with XAUTOCLAIM.
CLAIM_MIN_IDLE_MS = 30_000


def _stored_in_transaction(items: Sequence[Incoming], insert: InsertMethod) -> BatchResult:
    with transaction.atomic():
        return store_batch(items, insert=insert)


def _written_in_transaction(batch: PreparedBatch, insert: InsertMethod) -> BatchResult:
    with transaction.atomic():
        return write_batch(batch, insert=insert)


def append_events(
    envelopes: Iterable[dict[str, Any]], *, insert: InsertMethod = "auto", from_json: bool = False
) -> int:
    """Store envelopes directly (one transaction); returns how many were new. Tests and bench.

    `from_json=True` promises the envelopes were parsed from JSON text, as the stream's are."""
    items = [
        Incoming(payload=e, origin=f"direct:{e.get('id')}", from_json=from_json) for e in envelopes
    ]
    return len(_db_call(_stored_in_transaction, items, insert).stored)


def _db_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn; after a connection failure drop the connection so the next try reconnects."""
    try:
        return fn(*args)
    except (OperationalError, InterfaceError):
        if not connection.in_atomic_block:
            connection.close()
        raise


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
        result = _db_call(_drain_outbox_batch, batch)
        total += len(result.stored)
        if not result.consumed:
            return total


# --- the hot-state stream ---------------------------------------------------------------------


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


# orjson parses integers beyond 64 bits as floats (json keeps them exact): any run of 19 digits
# sends the entry to json, as does anything orjson refuses (NaN, lone surrogates, ...), so both
# parsers give the same values. (Every digit made "0", then one substring search: C speed.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"0" * 9)
_LONG_NUMBER = b"0" * 19


def _loads(raw: bytes) -> Any:
    if _LONG_NUMBER not in bytes(raw).translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def _parse_entry(entry_id: str, fields: dict[str, bytes]) -> Incoming:
    """The envelope in field "event"; anything unreadable is kept raw (stored as malformed)."""
    origin = f"stream:{entry_id}"
    raw = fields.get("event")
    if raw is None:
        return Incoming(payload={"fields": sorted(fields)}, origin=origin)
    try:
        return Incoming(payload=_loads(raw), origin=origin)
    except (ValueError, RecursionError):
        return Incoming(payload=bytes(raw), origin=origin)


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


class StreamDrainer:
    """One consumer of the audit stream in group "auditwriter"; counts what it stored."""

    def __init__(
        self,
        hotstate: HotState,
        *,
        batch: int = 500,
        consumer: str | None = None,
        claim_min_idle_ms: int = CLAIM_MIN_IDLE_MS,
        insert: InsertMethod = "auto",
        publish: Publish | None = None,
    ) -> None:
        self.hotstate = hotstate
        self.publish: Publish = publish or functools.partial(publish_live, hotstate)
        self.batch = batch
        self.consumer = consumer or consumer_name()
        self.claim_min_idle_ms = claim_min_idle_ms
        self.insert = insert
        self.stored = 0
        self.duplicates = 0
        self._group_ready = False
        # Entries read but not stored (the database failed): retried before reading new ones.
        self._retry: list[StreamEntry] = []
        self._writing: asyncio.Future[None] | None = None  # the batch being written (pump)

    async def ensure_group(self) -> None:
        if not self._group_ready:
            await self.hotstate.stream_ensure_group(AUDIT_STREAM, GROUP, start_id="0")
            self._group_ready = True

    def group_lost(self) -> None:
        self._group_ready = False

    async def claim_stale(self) -> int:
        """Take over and store entries that consumers read but did not acknowledge in time."""
        await self.ensure_group()
        handled = 0
        seen: set[str] = set()
        while True:
            entries = await self.hotstate.stream_pending_claim(
                AUDIT_STREAM,
                GROUP,
                self.consumer,
                min_idle_ms=self.claim_min_idle_ms,
                count=self.batch,
            )
            # Entries left unacknowledged on purpose (unroutable) come back at once when the
            # idle threshold is 0; seeing only those again means there is nothing more to claim.
            fresh = [entry for entry in entries if entry[0] not in seen]
            if not fresh:
                return handled
            seen.update(entry_id for entry_id, _ in fresh)
            log.info("claimed %d unacknowledged audit stream entries", len(fresh))
            handled += await self.store(fresh)
            if len(entries) < self.batch:
                return handled

    async def read_once(self, *, block_ms: int | None = None) -> int:
        """Store one batch of new entries (a failed batch is retried first); returns entries."""
        read = await self.pump(block_ms=block_ms)
        await self.settle()
        return read

    async def pump(self, *, block_ms: int | None = None) -> int:
        """Read the next batch (a failed one first) and prepare it while the batch before it is
        still being written, then start writing it; returns the entries read (0 once nothing
        new came and everything read before is stored). `settle` waits for the last write.

        Preparing is CPU work and writing mostly waits on PostgreSQL, so the two overlap; the
        batches are still written, acknowledged and published strictly one after the other.
        """
        await self.ensure_group()
        if self._retry:
            await self.settle()
            entries, self._retry = self._retry, []
        else:
            entries = await self.hotstate.stream_read_group(
                AUDIT_STREAM, GROUP, self.consumer, count=self.batch, block_ms=block_ms
            )
        if not entries:
            await self.settle()
            return 0
        batch = _prepare(entries)
        try:
            await self.settle()
        except BaseException:
            self._retry += entries  # after the failed batch, which settle put there
            raise
        self._writing = asyncio.ensure_future(self._write(entries, batch))
        return len(entries)

    async def settle(self) -> None:
        """Wait for the batch being written; a failure is raised here, its entries kept to be
        retried first."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def store(self, entries: list[StreamEntry]) -> int:
        """Store `entries` now, after whatever is being written."""
        await self.settle()
        await self._write(entries, _prepare(entries))
        return len(entries)

    async def _write(self, entries: list[StreamEntry], batch: PreparedBatch) -> None:
        try:
            result: BatchResult = await sync_to_async(_db_call)(
                _written_in_transaction, batch, self.insert
            )
        except BaseException:
            self._retry = entries
            raise
        unroutable = set(result.unroutable)
        for origin in sorted(unroutable):
            log.error("audit stream entry %s names no organisation; left unacknowledged", origin)
        done = [entry_id for entry_id, _ in entries if f"stream:{entry_id}" not in unroutable]
        # Acknowledged only now that the rows are committed: a crash before this line means a
        # redelivery, which the id check turns into a no-op. The table is now the record, so the
        # entries are dropped with the same step and the stream stays small (the writer's group
        # is the stream's only consumer).
        await self.hotstate.stream_ack_delete(AUDIT_STREAM, GROUP, done)
        self.stored += len(result.stored)
        self.duplicates += result.duplicates
        await self.publish(result.stored)


def _prepare(entries: list[StreamEntry]) -> PreparedBatch:
    return prepare_batch([_parse_entry(entry_id, fields) for entry_id, fields in entries])


async def drain_stream(
    hotstate: HotState,
    batch: int = 500,
    *,
    consumer: str | None = None,
    claim_min_idle_ms: int = CLAIM_MIN_IDLE_MS,
    insert: InsertMethod = "auto",
) -> int:
    """Claim stale entries, then store new ones until none are left; returns events stored."""
    drainer = StreamDrainer(
        hotstate,
        batch=batch,
        consumer=consumer,
        claim_min_idle_ms=claim_min_idle_ms,
        insert=insert,
    )
    await drainer.claim_stale()
    while await drainer.pump():
        pass
    return drainer.stored


# --- the loop ---------------------------------------------------------------------------------


async def _outbox_batch(publish: Publish, batch: int) -> BatchResult:
    result: BatchResult = await sync_to_async(_db_call)(_drain_outbox_batch, batch)
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
        from governance.hotstate import get_hotstate

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
        from governance.hotstate import get_hotstate

        hotstate = get_hotstate()
    from_outbox = 0
    while True:
        result = await _outbox_batch(functools.partial(publish_live, hotstate), batch)
        from_outbox += len(result.stored)
        if not result.consumed:
            break
    from_stream = await drain_stream(hotstate, batch, claim_min_idle_ms=claim_min_idle_ms)
    return from_outbox, from_stream
