"""The audit writer's consumer of the hot-state stream `governance.events.AUDIT_STREAM`.

The proxy appends each call's envelope (field "event", JSON) before it answers; `StreamDrainer`
reads them with consumer group "auditwriter", stores each batch in one transaction
(compliance/audit/store.py), then acknowledges and deletes the entries and hands the stored
events to the live feed. Entries are acknowledged only after the commit, so a crash between the
two redelivers them and the id check drops the repeats; entries another consumer left
unacknowledged for CLAIM_MIN_IDLE_MS are taken over. An entry without a usable organisation id
stays unacknowledged and is logged as an error.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import orjson
from asgiref.sync import sync_to_async
from django.db import transaction

from compliance.audit.publish import Publish, publish_live
from compliance.audit.rows import Incoming
from compliance.audit.store import (
    BatchResult,
    InsertMethod,
    PreparedBatch,
    db_call,
    prepare_batch,
    write_batch,
)
from governance.events import AUDIT_STREAM

if TYPE_CHECKING:
    from governance.runtime.hotstate import HotState, StreamEntry

log = logging.getLogger("igris.audit.writer")

GROUP = "auditwriter"
# An entry another consumer read but has not acknowledged for this long is presumed orphaned
# (its writer died) and taken over with XAUTOCLAIM.
CLAIM_MIN_IDLE_MS = 30_000


def _written_in_transaction(batch: PreparedBatch, insert: InsertMethod) -> BatchResult:
    with transaction.atomic():
        return write_batch(batch, insert=insert)


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
            result: BatchResult = await sync_to_async(db_call)(
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
