"""One batch of audit envelopes into the audit table: validate, chain, insert (DESIGN.md section 1).

The audit writer (compliance/audit/writer.py) calls `store_batch` once per batch, inside the
batch's transaction: lock the organisations' `ChainHead` rows (sorted, so two writers never
deadlock), skip envelope ids already stored (redelivery after a crash is harmless), assign `seq`
and chain `hash` (compliance/audit/chain.py), insert, advance the heads.

An envelope that cannot be stored as it is (not JSON, bad timestamp, NaN, a NUL character
PostgreSQL refuses, ...) is never dropped: when its organisation is known it is stored as an
`audit.malformed` event holding the raw text (rows.py), so one bad event cannot block the
chain; without one it is reported as unroutable.

Speed (the writer's budget is a few tens of microseconds per event): each event is encoded once
by compliance/audit/rows.py, before the chain heads are locked, with placeholders for prev_hash
and seq; chaining splices their values in and hashes. On PostgreSQL a batch costs five
statements whatever its size (create and lock the heads, the id check, COPY, advance the
heads), with arrays as parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from compliance.audit.chain import GENESIS, link
from compliance.audit.rows import (
    Incoming,
    MalformedEvent,
    PreparedRow,
    envelope_row,
    malformed_row,
)
from compliance.models import AuditEvent, ChainHead
from compliance.observe import rollups

log = logging.getLogger("igris.audit.writer")

# At or above this many rows a PostgreSQL batch is written with COPY instead of INSERT. COPY sends
# the values already encoded; the ORM's INSERT prepares every field of every row again. Measured
# (writer process CPU per event, 1,000 events/s arriving, batches of about 4): COPY 361 us, ORM
# INSERT 514 us; from 50 rows COPY is 2-3x faster. So COPY from the first row.
COPY_MIN_ROWS = 1
InsertMethod = Literal["auto", "copy", "bulk"]


@dataclass(slots=True)
class BatchResult:
    consumed: int = 0
    stored: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    unroutable: list[str] = field(default_factory=list)


# --- storing a batch --------------------------------------------------------------------------


@dataclass(slots=True)
class PreparedBatch:
    """A batch validated and encoded, ready for `write_batch`: no database touched yet."""

    result: BatchResult
    recorded_at: datetime
    entries: list[PreparedRow]
    ids: set[str]


def prepare_batch(items: Sequence[Incoming]) -> PreparedBatch:
    """Validate and encode `items` (pure CPU work: the writer overlaps it with the previous
    batch's database work). Malformed envelopes become `audit.malformed` events here."""
    recorded_at = timezone.now()
    result = BatchResult(consumed=len(items))
    prepared: list[PreparedRow] = []
    seen: set[str] = set()
    for item in items:
        try:
            entry = envelope_row(item, recorded_at)
        except MalformedEvent as exc:
            log.error("malformed audit event from %s: %s", item.origin, exc)
            malformed = malformed_row(item, str(exc), recorded_at)
            if malformed is None:
                result.unroutable.append(item.origin)
                continue
            entry = malformed
        if entry.row["id"] in seen:
            result.duplicates += 1
            continue
        seen.add(entry.row["id"])
        prepared.append(entry)
    return PreparedBatch(result, recorded_at, prepared, seen)


def write_batch(batch: PreparedBatch, *, insert: InsertMethod = "auto") -> BatchResult:
    """Chain and insert a prepared batch; must run inside `transaction.atomic()`."""
    result, prepared, recorded_at = batch.result, batch.entries, batch.recorded_at
    if not prepared:
        return result
    # The id check runs after the locks, so it sees whatever a concurrent writer committed for
    # these orgs.
    heads = _lock_heads(sorted({entry.row["org_id"] for entry in prepared}), recorded_at)
    stored_ids = _stored_ids(batch.ids)
    fresh = [entry for entry in prepared if entry.row["id"] not in stored_ids]
    result.duplicates += len(prepared) - len(fresh)
    if not fresh:
        return result
    chain_entries(fresh, heads)
    _insert(fresh, insert)
    # The dashboard's counters commit with the events they count (compliance/observe/rollups.py
    # says why), under the chain head locks taken above.
    rollups.record(entry.row for entry in fresh)
    moved = {entry.row["org_id"] for entry in fresh}
    _advance_heads({org: head for org, head in heads.items() if org in moved}, recorded_at)
    result.stored = [entry.row for entry in fresh]
    if result.duplicates:
        log.info("skipped %d audit events already stored", result.duplicates)
    return result


def store_batch(items: Sequence[Incoming], *, insert: InsertMethod = "auto") -> BatchResult:
    """Chain and insert `items`; must run inside `transaction.atomic()` (the caller's batch)."""
    return write_batch(prepare_batch(items), insert=insert)


def db_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn; after a connection failure drop the connection so the next try reconnects."""
    try:
        return fn(*args)
    except (OperationalError, InterfaceError):
        if not connection.in_atomic_block:
            connection.close()
        raise


def chain_entries(entries: Sequence[PreparedRow], heads: dict[str, tuple[int, str]]) -> None:
    """Give each entry the next seq of its org, the org's last hash as prev_hash, and its hash;
    `heads` maps org -> (seq, hash) and is advanced in place. Pure: no database."""
    for entry in entries:
        row = entry.row
        seq, prev = heads[row["org_id"]]
        seq += 1
        row["seq"], row["prev_hash"] = seq, prev
        before, between, after = entry.parts
        canonical_bytes = b"".join((before, prev.encode("ascii"), between, b"%d" % seq, after))
        row["hash"] = link(prev, canonical_bytes)
        heads[row["org_id"]] = (seq, row["hash"])


# PostgreSQL: one statement per step whatever the batch size, the ids passed as one array.
_CREATE_HEADS_SQL = (
    "INSERT INTO compliance_chainhead (org_id, seq, hash, updated_at) "
    "SELECT org, 0, %s, %s FROM unnest(%s::uuid[]) AS org ON CONFLICT (org_id) DO NOTHING"
)
# Locked in org order, so concurrent writers queue instead of deadlocking.
_LOCK_HEADS_SQL = (
    "SELECT org_id::text, seq, hash FROM compliance_chainhead WHERE org_id = ANY(%s::uuid[]) "
    "ORDER BY org_id FOR UPDATE"
)
_STORED_IDS_SQL = "SELECT id::text FROM compliance_auditevent WHERE id = ANY(%s::uuid[])"
_ADVANCE_HEADS_SQL = (
    "UPDATE compliance_chainhead AS head SET seq = moved.seq, hash = moved.hash, updated_at = %s "
    "FROM unnest(%s::uuid[], %s::bigint[], %s::text[]) AS moved(org_id, seq, hash) "
    "WHERE head.org_id = moved.org_id"
)


def _lock_heads(orgs: list[str], now: datetime) -> dict[str, tuple[int, str]]:
    """Lock the chain heads of `orgs` (sorted), creating missing ones: org -> (seq, hash)."""
    if connection.vendor != "postgresql":
        ChainHead.objects.bulk_create([ChainHead(org_id=o) for o in orgs], ignore_conflicts=True)
        locked = ChainHead.objects.select_for_update().filter(org_id__in=orgs).order_by("org_id")
        return {str(head.org_id): (head.seq, head.hash) for head in locked}
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_HEADS_SQL, [GENESIS, now, orgs])
        cursor.execute(_LOCK_HEADS_SQL, [orgs])
        return {org: (seq, head_hash) for org, seq, head_hash in cursor.fetchall()}


def _stored_ids(ids: Collection[str]) -> set[str]:
    if connection.vendor != "postgresql":
        stored = AuditEvent.objects.filter(id__in=ids).values_list("id", flat=True)
        return {str(event_id) for event_id in stored}
    with connection.cursor() as cursor:
        cursor.execute(_STORED_IDS_SQL, [list(ids)])
        return {event_id for (event_id,) in cursor.fetchall()}


def _advance_heads(heads: dict[str, tuple[int, str]], now: datetime) -> None:
    if connection.vendor != "postgresql":
        for org in sorted(heads):
            seq, head_hash = heads[org]
            ChainHead.objects.filter(org_id=org).update(seq=seq, hash=head_hash, updated_at=now)
        return
    orgs = sorted(heads)
    with connection.cursor() as cursor:
        cursor.execute(
            _ADVANCE_HEADS_SQL,
            [now, orgs, [heads[org][0] for org in orgs], [heads[org][1] for org in orgs]],
        )


_ATTNAMES = [f.attname for f in AuditEvent._meta.concrete_fields]
_COPY_SQL = "COPY {table} ({columns}) FROM STDIN".format(
    table=AuditEvent._meta.db_table,
    columns=", ".join(f'"{f.column}"' for f in AuditEvent._meta.concrete_fields),
)
_copy_values = itemgetter(*_ATTNAMES)


def _insert(entries: list[PreparedRow], method: InsertMethod) -> None:
    if method == "copy" and connection.vendor != "postgresql":
        raise ValueError("COPY needs PostgreSQL")
    use_copy = connection.vendor == "postgresql" and (
        method == "copy" or (method == "auto" and len(entries) >= COPY_MIN_ROWS)
    )
    if use_copy:
        _insert_copy(entries)
    else:
        AuditEvent.objects.bulk_create([AuditEvent(**entry.row) for entry in entries])


def _insert_copy(entries: list[PreparedRow]) -> None:
    # Text COPY: JSON columns go as the canonical text already computed (valid JSON with the
    # same values), which spares encoding every object a second time.
    with connection.cursor() as cursor, cursor.cursor.copy(_COPY_SQL) as copy:
        for entry in entries:
            copy.write_row(_copy_values({**entry.row, **entry.json_text}))
