"""The audit writer: the only process that inserts audit events (DESIGN.md section 1).

Two inputs, one chain per organisation:

- the `PendingEvent` outbox, filled by governance services in the same transaction as the change
  they record (`drain_outbox`, synchronous);
- the hot-state stream `governance.events.AUDIT_STREAM`, filled by the proxy before it answers a
  call (DESIGN.md section 3, durability rule); read with consumer group "auditwriter", each entry's
  field "event" holding the JSON envelope (`drain_stream`, asynchronous).

Each batch is one database transaction: lock the organisations' `ChainHead` rows (sorted, so two
writers never deadlock), skip envelope ids already stored (redelivery after a crash is harmless),
assign `seq` and chain `hash` (compliance/audit/chain.py), insert, advance the heads, and delete
the consumed outbox rows. Stream entries are acknowledged only after that commit, so a crash
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
import math
import os
import re
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, connection, models, transaction
from django.utils import timezone

from compliance.audit.chain import (
    CHAINED_FIELDS,
    SORTED_FIELDS,
    CanonicalError,
    canonical_from_members,
    encode_member,
    encode_value,
    link,
)
from compliance.models import CALL_FIELDS, AuditEvent, ChainHead, audit_envelope
from governance.events import AUDIT_STREAM, SYSTEM

if TYPE_CHECKING:
    from governance.hotstate import HotState, StreamEntry

log = logging.getLogger("igris.audit.writer")

GROUP = "auditwriter"
# An entry another consumer read but has not acknowledged for this long is presumed orphaned
# (its writer died) and taken over with XAUTOCLAIM.
CLAIM_MIN_IDLE_MS = 30_000
# At or above this many rows a PostgreSQL batch is written with COPY instead of INSERT. Measured
# (bench machine, loaded): the same below ~10 rows, COPY 2-3x faster from 50 rows per batch.
COPY_MIN_ROWS = 20
MALFORMED_TYPE = "audit.malformed"
# uuid5 namespace for the ids of malformed events, derived from where the input came from.
MALFORMED_NAMESPACE = uuid.UUID("6f0c4f5e-3d7b-5c1e-9a43-1b8e2f0a6d21")
RAW_LIMIT = 65_536

InsertMethod = Literal["auto", "copy", "bulk"]


class MalformedEvent(ValueError):
    """The envelope cannot be stored as it is."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One envelope to store: the parsed payload, where it came from, and its org if known."""

    payload: Any
    origin: str
    org_id: uuid.UUID | None = None
    # Parsed from JSON text (every object key a string): lets encoding skip checking keys.
    from_json: bool = True


@dataclass(slots=True)
class BatchResult:
    consumed: int = 0
    stored: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    unroutable: list[str] = field(default_factory=list)


# --- envelope -> row --------------------------------------------------------------------------


_INT32 = 2**31
_INT64 = 2**63
_FLOAT_EXACT = 2**53
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _lift_rule(model_field: Any) -> Callable[[Any], bool]:
    """Whether a value from `data` may live in this column and read back exactly as written."""
    if isinstance(model_field, models.UUIDField):
        return lambda v: type(v) is str and _UUID_TEXT.fullmatch(v) is not None
    if isinstance(model_field, models.CharField):
        limit = model_field.max_length or 0
        return lambda v: type(v) is str and len(v) <= limit and _storable_text(v)
    if isinstance(model_field, models.BigIntegerField):
        return lambda v: type(v) is int and -_INT64 <= v < _INT64
    if isinstance(model_field, models.IntegerField):
        return lambda v: type(v) is int and -_INT32 <= v < _INT32
    if isinstance(model_field, models.FloatField):
        return lambda v: (
            (type(v) is int and abs(v) <= _FLOAT_EXACT) or (type(v) is float and math.isfinite(v))
        )
    if isinstance(model_field, models.JSONField):
        return lambda v: v is not None
    raise TypeError(f"no lifting rule for {model_field!r}")


def _storable_text(value: str) -> bool:
    """PostgreSQL text refuses U+0000, and UTF-8 has no lone surrogates."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_text(value: str) -> str:
    """Any text made storable: NUL and lone surrogates written as backslash escapes."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


_CALL_COLUMNS = {f.name: f for f in AuditEvent._meta.concrete_fields if f.name in CALL_FIELDS}
_LIFT = {name: _lift_rule(_CALL_COLUMNS[name]) for name in CALL_FIELDS}
_NO_CALL_FIELDS = dict.fromkeys(CALL_FIELDS)
_FLOAT_COLUMNS = frozenset(
    name for name in CALL_FIELDS if isinstance(_CALL_COLUMNS[name], models.FloatField)
)
_JSON_COLUMNS = frozenset({"actor", "data", "arguments", "client_info"})
_NULL_MEMBER = {name: encode_member(name, None) for name in SORTED_FIELDS}
_MEMBER_PREFIX = {name: member[: -len("null")] for name, member in _NULL_MEMBER.items()}
_encode_string = json.encoder.encode_basestring  # type: ignore[attr-defined]
_SEQ_AT = SORTED_FIELDS.index("seq")
_PREV_AT = SORTED_FIELDS.index("prev_hash")
_NUL_ESCAPE = "\\u0000"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


@dataclass(slots=True)
class _Prepared:
    """A row ready to chain: column values, its canonical members with the seq and prev_hash
    slots still open, and the JSON columns' text (COPY sends that instead of re-encoding)."""

    row: dict[str, Any]
    members: list[str]
    json_text: dict[str, str]


def _prepare(row: dict[str, Any], *, from_json: bool) -> _Prepared:
    members: list[str] = []
    append = members.append
    json_text: dict[str, str] = {}
    # The hot loop of the writer (29 fields per event): None and plain strings, the common
    # values, skip the general encoder.
    for name in SORTED_FIELDS:
        value = row[name]
        if value is None:
            append(_NULL_MEMBER[name])
        elif type(value) is str:
            append(_MEMBER_PREFIX[name] + _encode_string(value))
        elif name in _JSON_COLUMNS:
            try:
                text = encode_value(value, keys_checked=from_json)
                text.encode("utf-8")
            except (CanonicalError, UnicodeEncodeError) as exc:
                raise MalformedEvent(f"{name}: {exc}") from None
            # PostgreSQL jsonb cannot hold U+0000; its escape in the text is the cheap hint.
            if _NUL_ESCAPE in text and _has_nul(value):
                raise MalformedEvent(f"{name} contains a NUL character")
            json_text[name] = text
            append(_MEMBER_PREFIX[name] + text)
        else:
            append(_MEMBER_PREFIX[name] + encode_value(value))
    return _Prepared(row, members, json_text)


def _uuid(value: Any, name: str) -> str:
    """A UUID in its canonical text form (ids stay text in the writer: parsing costs more)."""
    if type(value) is str and _UUID_TEXT.fullmatch(value):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise MalformedEvent(f"{name} {value!r} is not a UUID") from None


def _text(payload: dict[str, Any], name: str, limit: int) -> str:
    value = payload.get(name)
    if type(value) is not str or not value or len(value) > limit or not _storable_text(value):
        raise MalformedEvent(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise MalformedEvent(f"ts {value!r} is not ISO 8601") from None
    else:
        raise MalformedEvent("ts is missing")
    if moment.utcoffset() is None:
        raise MalformedEvent(f"ts {value!r} has no time zone")
    return moment


def _row(item: Incoming, recorded_at: datetime) -> _Prepared:
    """One envelope as column values (seq, prev_hash and hash still to come)."""
    payload = item.payload
    if not isinstance(payload, dict):
        raise MalformedEvent("the envelope is not a JSON object")
    event_id = _uuid(payload.get("id"), "id")
    org_id = _uuid(payload.get("org_id", item.org_id), "org_id")
    if item.org_id is not None and org_id != str(item.org_id):
        raise MalformedEvent(f"org_id {org_id} differs from the outbox row's {item.org_id}")
    ts = _timestamp(payload.get("ts"))
    source, type_ = _text(payload, "source", 64), _text(payload, "type", 100)
    actor = payload.get("actor")
    if not isinstance(actor, dict):
        raise MalformedEvent("actor is not a JSON object")
    data = payload.get("data", {})
    if not isinstance(data, dict):
        raise MalformedEvent("data is not a JSON object")
    row: dict[str, Any] = {
        "id": event_id,
        "org_id": org_id,
        "seq": None,
        "prev_hash": None,
        "ts": ts,
        "recorded_at": recorded_at,
        "source": source,
        "type": type_,
        "actor": actor,
    }
    row.update(_NO_CALL_FIELDS)
    rest = {}
    for name, value in data.items():
        lift = _LIFT.get(name)
        if lift is not None and value is not None and lift(value):
            # A float column reads back a float: hash what will be read.
            row[name] = float(value) if name in _FLOAT_COLUMNS else value
        else:
            rest[name] = value
    row["data"] = rest
    return _prepare(row, from_json=item.from_json)


def _malformed_row(item: Incoming, error: str, recorded_at: datetime) -> _Prepared | None:
    """An `audit.malformed` event keeping the raw input as text, or None without an org."""
    org_id = None if item.org_id is None else str(item.org_id)
    if org_id is None and isinstance(item.payload, dict):
        try:
            org_id = _uuid(item.payload.get("org_id"), "org_id")
        except MalformedEvent:
            org_id = None
    if org_id is None:
        return None
    if isinstance(item.payload, bytes | str):
        raw = item.payload if isinstance(item.payload, str) else repr(item.payload)
    else:
        # ensure_ascii escapes NULs and lone surrogates, so the text is always storable.
        raw = json.dumps(item.payload, ensure_ascii=True, sort_keys=True, default=repr)
    raw = _safe_text(raw)
    data = {
        "error": _safe_text(error)[:1000],
        "origin": item.origin,
        "raw": raw[:RAW_LIMIT],
        "raw_truncated": len(raw) > RAW_LIMIT,
    }
    row: dict[str, Any] = {name: None for name in CHAINED_FIELDS}
    row.update(
        id=str(uuid.uuid5(MALFORMED_NAMESPACE, item.origin)),
        org_id=org_id,
        ts=recorded_at,
        recorded_at=recorded_at,
        source="system",
        type=MALFORMED_TYPE,
        actor=SYSTEM.as_dict(),
        data=data,
    )
    return _prepare(row, from_json=True)


# --- storing a batch --------------------------------------------------------------------------


def store_batch(items: Sequence[Incoming], *, insert: InsertMethod = "auto") -> BatchResult:
    """Chain and insert `items`; must run inside `transaction.atomic()` (the caller's batch)."""
    recorded_at = timezone.now()
    result = BatchResult(consumed=len(items))
    prepared: list[_Prepared] = []
    seen: set[str] = set()
    for item in items:
        try:
            entry = _row(item, recorded_at)
        except MalformedEvent as exc:
            log.error("malformed audit event from %s: %s", item.origin, exc)
            malformed = _malformed_row(item, str(exc), recorded_at)
            if malformed is None:
                result.unroutable.append(item.origin)
                continue
            entry = malformed
        if entry.row["id"] in seen:
            result.duplicates += 1
            continue
        seen.add(entry.row["id"])
        prepared.append(entry)
    if not prepared:
        return result

    orgs = sorted({entry.row["org_id"] for entry in prepared})
    ChainHead.objects.bulk_create([ChainHead(org_id=org) for org in orgs], ignore_conflicts=True)
    # Locked in org order, so concurrent writers queue instead of deadlocking; the id check below
    # runs after the locks, so it sees whatever a concurrent writer committed for these orgs.
    heads = {
        str(head.org_id): head
        for head in ChainHead.objects.select_for_update().filter(org_id__in=orgs).order_by("org_id")
    }
    stored_ids = {
        str(event_id)
        for event_id in AuditEvent.objects.filter(id__in=seen).values_list("id", flat=True)
    }
    fresh = [entry for entry in prepared if entry.row["id"] not in stored_ids]
    result.duplicates += len(prepared) - len(fresh)
    if not fresh:
        return result
    state = {org: (head.seq, head.hash) for org, head in heads.items()}
    chain_entries(fresh, state)
    _insert(fresh, insert)
    for org in sorted({entry.row["org_id"] for entry in fresh}):
        seq, head_hash = state[org]
        ChainHead.objects.filter(org_id=org).update(seq=seq, hash=head_hash, updated_at=recorded_at)
    result.stored = [entry.row for entry in fresh]
    if result.duplicates:
        log.info("skipped %d audit events already stored", result.duplicates)
    return result


def chain_entries(entries: Sequence[_Prepared], heads: dict[str, tuple[int, str]]) -> None:
    """Give each entry the next seq of its org, the org's last hash as prev_hash, and its hash;
    `heads` maps org -> (seq, hash) and is advanced in place. Pure: no database."""
    for entry in entries:
        row = entry.row
        seq, prev = heads[row["org_id"]]
        seq += 1
        row["seq"], row["prev_hash"] = seq, prev
        entry.members[_SEQ_AT] = _MEMBER_PREFIX["seq"] + str(seq)
        entry.members[_PREV_AT] = f'{_MEMBER_PREFIX["prev_hash"]}"{prev}"'
        row["hash"] = link(prev, canonical_from_members(entry.members))
        heads[row["org_id"]] = (seq, row["hash"])


_ATTNAMES = [f.attname for f in AuditEvent._meta.concrete_fields]
_COPY_SQL = "COPY {table} ({columns}) FROM STDIN".format(
    table=AuditEvent._meta.db_table,
    columns=", ".join(f'"{f.column}"' for f in AuditEvent._meta.concrete_fields),
)


def _insert(entries: list[_Prepared], method: InsertMethod) -> None:
    if method == "copy" and connection.vendor != "postgresql":
        raise ValueError("COPY needs PostgreSQL")
    use_copy = connection.vendor == "postgresql" and (
        method == "copy" or (method == "auto" and len(entries) >= COPY_MIN_ROWS)
    )
    if use_copy:
        _insert_copy(entries)
    else:
        AuditEvent.objects.bulk_create([AuditEvent(**entry.row) for entry in entries])


def _insert_copy(entries: list[_Prepared]) -> None:
    # Text COPY: JSON columns go as the canonical text already computed (valid JSON with the
    # same values), which spares encoding every object a second time.
    with connection.cursor() as cursor, cursor.cursor.copy(_COPY_SQL) as copy:
        for entry in entries:
            row, json_text = entry.row, entry.json_text
            copy.write_row(
                [json_text.get(name) if name in _JSON_COLUMNS else row[name] for name in _ATTNAMES]
            )


def _stored_in_transaction(items: Sequence[Incoming], insert: InsertMethod) -> BatchResult:
    with transaction.atomic():
        return store_batch(items, insert=insert)


def append_events(envelopes: Iterable[dict[str, Any]], *, insert: InsertMethod = "auto") -> int:
    """Store envelopes directly (one transaction); returns how many were new. Tests and bench."""
    items = [
        Incoming(payload=e, origin=f"direct:{e.get('id')}", from_json=False) for e in envelopes
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


def _parse_entry(entry_id: str, fields: dict[str, bytes]) -> Incoming:
    """The envelope in field "event"; anything unreadable is kept raw (stored as malformed)."""
    origin = f"stream:{entry_id}"
    raw = fields.get("event")
    if raw is None:
        return Incoming(payload={"fields": sorted(fields)}, origin=origin)
    try:
        return Incoming(payload=json.loads(raw), origin=origin)
    except (ValueError, RecursionError):
        return Incoming(payload=bytes(raw), origin=origin)


def live_message(row: dict[str, Any]) -> str:
    """What the live feed gets: the event as `AuditEvent.as_envelope()` shows it (seq, hash)."""
    return json.dumps(audit_envelope(row), separators=(",", ":"))


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
        await self.ensure_group()
        if self._retry:
            entries, self._retry = self._retry, []
            return await self.store(entries)
        entries = await self.hotstate.stream_read_group(
            AUDIT_STREAM, GROUP, self.consumer, count=self.batch, block_ms=block_ms
        )
        return await self.store(entries) if entries else 0

    async def store(self, entries: list[StreamEntry]) -> int:
        items = [_parse_entry(entry_id, fields) for entry_id, fields in entries]
        try:
            result: BatchResult = await sync_to_async(_db_call)(
                _stored_in_transaction, items, self.insert
            )
        except BaseException:
            self._retry = entries
            raise
        unroutable = set(result.unroutable)
        for origin in sorted(unroutable):
            log.error("audit stream entry %s names no organisation; left unacknowledged", origin)
        done = [entry_id for entry_id, _ in entries if f"stream:{entry_id}" not in unroutable]
        # Acknowledged only now that the rows are committed: a crash before this line means a
        # redelivery, which the id check turns into a no-op.
        await self.hotstate.stream_ack(AUDIT_STREAM, GROUP, done)
        # The table is now the record: drop the entries so the stream stays small (the writer's
        # group is the stream's only consumer).
        await self.hotstate.stream_delete(AUDIT_STREAM, done)
        self.stored += len(result.stored)
        self.duplicates += result.duplicates
        await self.publish(result.stored)
        return len(entries)


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
    while await drainer.read_once():
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
    drainer: StreamDrainer, stop: asyncio.Event, block_ms: int, claim_every_s: float
) -> None:
    backoff = _Backoff()
    loop = asyncio.get_running_loop()
    next_claim = 0.0  # claim on start, then periodically (another writer may have died)
    while not stop.is_set():
        try:
            if loop.time() >= next_claim:
                await drainer.claim_stale()
                next_claim = loop.time() + claim_every_s
            await drainer.read_once(block_ms=block_ms)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audit stream batch failed; retrying in %.1f s", backoff.next_s)
            # Redis may have restarted without the group (NOGROUP): make sure it exists again.
            drainer.group_lost()
            await backoff.wait(stop)
            continue
        backoff.reset()


async def run_forever(
    stop_event: asyncio.Event | None = None,
    *,
    hotstate: HotState | None = None,
    batch: int = 500,
    outbox_idle_s: float = 0.1,
    stream_block_ms: int = 500,
    claim_every_s: float = CLAIM_MIN_IDLE_MS / 1000,
    claim_min_idle_ms: int = CLAIM_MIN_IDLE_MS,
) -> None:
    """Drain the outbox and the stream until `stop_event` is set (or the task is cancelled).

    Database and hot-state errors are logged and retried with backoff; nothing is acknowledged
    or deleted before it is committed, so retries neither lose nor duplicate events.
    """
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
        _stream_loop(drainer, stop, stream_block_ms, claim_every_s),
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
