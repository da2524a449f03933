"""One batch of audit envelopes into the audit table: validate, chain, insert (DESIGN.md section 1).

The audit writer (compliance/audit/writer.py) calls `store_batch` once per batch, inside the
batch's transaction: lock the organisations' `ChainHead` rows (sorted, so two writers never
deadlock), skip envelope ids already stored (redelivery after a crash is harmless), assign `seq`
and chain `hash` (compliance/audit/chain.py), insert, advance the heads.

An envelope that cannot be stored as it is (not JSON, bad timestamp, NaN, a NUL character
PostgreSQL refuses, ...) is never dropped: when its organisation is known it is stored as an
`audit.malformed` event holding the raw text, so one bad event cannot block the chain; without
one it is reported as unroutable.

Speed (the writer's budget is a few tens of microseconds per event): each event is encoded once,
in one orjson call where that provably gives the canonical bytes (chain.canonical_json_native),
before the chain heads are locked, with placeholders for prev_hash and seq; chaining splices
their values in and hashes. On PostgreSQL a batch costs five statements whatever its size
(create and lock the heads, the id check, COPY, advance the heads), with arrays as parameters.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal

import orjson
from django.db import connection, models
from django.utils import timezone

from compliance.audit.chain import (
    CHAINED_FIELDS,
    GENESIS,
    CanonicalError,
    canonical,
    canonical_json_native,
    encode_value,
    format_timestamp,
    link,
)
from compliance.models import CALL_FIELDS, AuditEvent, ChainHead
from governance.events import SYSTEM

log = logging.getLogger("igris.audit.writer")

# At or above this many rows a PostgreSQL batch is written with COPY instead of INSERT. COPY sends
# the values already encoded; the ORM's INSERT prepares every field of every row again. Measured
# (writer process CPU per event, 1,000 events/s arriving, batches of about 4): COPY 361 us, ORM
# INSERT 514 us; from 50 rows COPY is 2-3x faster. So COPY from the first row.
COPY_MIN_ROWS = 1
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
_JSON_COLUMNS = tuple(
    f.name
    for f in AuditEvent._meta.concrete_fields
    if f.name in CHAINED_FIELDS and isinstance(f, models.JSONField)
)
_NUL_ESCAPE = b"\\u0000"
_PREV_KEY = b',"prev_hash":"'  # never the first member ("actor" sorts before it)
_SEQ_KEY = b',"seq":'


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
    """A row ready to chain: column values, its canonical bytes cut around the values of
    prev_hash and seq (known only when the batch is chained), and the JSON columns' texts
    (COPY sends them)."""

    row: dict[str, Any]
    parts: tuple[bytes, bytes, bytes]
    json_text: dict[str, str]


def _check_json_columns(row: dict[str, Any], *, from_json: bool) -> None:
    """Raise MalformedEvent naming the JSON column that cannot be stored as it is."""
    for name in _JSON_COLUMNS:
        value = row[name]
        if value is None:
            continue
        try:
            encode_value(value, keys_checked=from_json).encode("utf-8")
        except (CanonicalError, UnicodeEncodeError) as exc:
            raise MalformedEvent(f"{name}: {exc}") from None
        # PostgreSQL jsonb cannot hold U+0000.
        if _has_nul(value):
            raise MalformedEvent(f"{name} contains a NUL character")


# A batch's events share one recorded_at: its text is computed once.
_batch_timestamp = functools.lru_cache(maxsize=4)(format_timestamp)


def _canonical_parts(row: dict[str, Any], *, from_json: bool) -> tuple[bytes, bytes, bytes]:
    """canonical(row) with placeholders for prev_hash and seq, cut around them.

    The placeholders make the encoding one call for the whole event. The members after
    prev_hash and seq in key order are all scalars, whose JSON text cannot hold an unescaped
    quote, so the last occurrence of each key is the member itself.
    """
    doc = dict(row)
    doc["seq"], doc["prev_hash"] = 0, GENESIS
    doc["ts"] = format_timestamp(row["ts"])
    doc["recorded_at"] = _batch_timestamp(row["recorded_at"])
    for name in _FLOAT_COLUMNS:
        # canonical(12.0) is canonical(12): the integer spares the slow path for round values.
        value = doc[name]
        if type(value) is float and value.is_integer() and abs(value) < _FLOAT_EXACT:
            doc[name] = int(value)
    try:
        # Values not parsed from JSON may hold types orjson writes its own way: the general path.
        out = canonical_json_native(doc) if from_json else canonical(doc)
    except CanonicalError:
        _check_json_columns(row, from_json=from_json)  # names the column
        raise
    if _NUL_ESCAPE in out:  # an escaped NUL, or only text that looks like one
        _check_json_columns(row, from_json=from_json)
    prev_at = out.rindex(_PREV_KEY) + len(_PREV_KEY)
    seq_at = out.rindex(_SEQ_KEY, prev_at) + len(_SEQ_KEY)
    return out[:prev_at], out[prev_at + len(GENESIS) : seq_at], out[seq_at + 1 :]


_COPY_JSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _not_json(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _json_text(value: Any) -> str:
    """A JSON column's text for COPY: any spelling of the same values will do (jsonb keeps
    values, not text); the canonical one where orjson cannot write it (big integers, datetimes)."""
    if value is None:
        return "null"
    try:
        return orjson.dumps(value, default=_not_json, option=_COPY_JSON_OPTIONS).decode("utf-8")
    except TypeError:
        return encode_value(value)


def _prepare(row: dict[str, Any], *, from_json: bool) -> _Prepared:
    try:
        parts = _canonical_parts(row, from_json=from_json)
    except CanonicalError as exc:  # a scalar column's value was checked when it was lifted
        raise MalformedEvent(str(exc)) from None
    json_text = {name: _json_text(row[name]) for name in _JSON_COLUMNS}
    return _Prepared(row, parts, json_text)


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


@dataclass(slots=True)
class PreparedBatch:
    """A batch validated and encoded, ready for `write_batch`: no database touched yet."""

    result: BatchResult
    recorded_at: datetime
    entries: list[_Prepared]
    ids: set[str]


def prepare_batch(items: Sequence[Incoming]) -> PreparedBatch:
    """Validate and encode `items` (pure CPU work: the writer overlaps it with the previous
    batch's database work). Malformed envelopes become `audit.malformed` events here."""
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
    moved = {entry.row["org_id"] for entry in fresh}
    _advance_heads({org: head for org, head in heads.items() if org in moved}, recorded_at)
    result.stored = [entry.row for entry in fresh]
    if result.duplicates:
        log.info("skipped %d audit events already stored", result.duplicates)
    return result


def store_batch(items: Sequence[Incoming], *, insert: InsertMethod = "auto") -> BatchResult:
    """Chain and insert `items`; must run inside `transaction.atomic()` (the caller's batch)."""
    return write_batch(prepare_batch(items), insert=insert)


def chain_entries(entries: Sequence[_Prepared], heads: dict[str, tuple[int, str]]) -> None:
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
            copy.write_row(_copy_values({**entry.row, **entry.json_text}))
