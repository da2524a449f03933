"""An audit envelope as a row of the audit table: validated, lifted into columns, encoded.

`envelope_row` checks an envelope (ids, timestamp, source, type, actor, data), lifts the call fields
that fit their columns out of `data`, and encodes the event canonically once, in one orjson call
where that provably gives the canonical bytes (chain.canonical_json_native), with placeholders
for prev_hash and seq, which `store.chain_entries` splices in when the batch is chained. An
envelope that cannot be stored as it is raises `MalformedEvent`; `malformed_row` makes the
`audit.malformed` event that keeps its raw text instead. Pure: no database.
"""

from __future__ import annotations

import functools
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import models

from compliance.audit.chain import (
    CHAINED_FIELDS,
    GENESIS,
    ORJSON_PASSTHROUGH,
    CanonicalError,
    canonical,
    canonical_json_native,
    encode_value,
    format_timestamp,
    not_json,
)
from compliance.models import CALL_FIELDS, AuditEvent
from governance.events import SYSTEM

MALFORMED_TYPE = "audit.malformed"
# uuid5 namespace for the ids of malformed events, derived from where the input came from.
MALFORMED_NAMESPACE = uuid.UUID("6f0c4f5e-3d7b-5c1e-9a43-1b8e2f0a6d21")
RAW_LIMIT = 65_536


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
class PreparedRow:
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


def _json_text(value: Any) -> str:
    """A JSON column's text for COPY: any spelling of the same values will do (jsonb keeps
    values, not text); the canonical one where orjson cannot write it (big integers, datetimes)."""
    if value is None:
        return "null"
    try:
        return orjson.dumps(value, default=not_json, option=ORJSON_PASSTHROUGH).decode("utf-8")
    except TypeError:
        return encode_value(value)


def _prepare(row: dict[str, Any], *, from_json: bool) -> PreparedRow:
    try:
        parts = _canonical_parts(row, from_json=from_json)
    except CanonicalError as exc:  # a scalar column's value was checked when it was lifted
        raise MalformedEvent(str(exc)) from None
    json_text = {name: _json_text(row[name]) for name in _JSON_COLUMNS}
    return PreparedRow(row, parts, json_text)


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


def envelope_row(item: Incoming, recorded_at: datetime) -> PreparedRow:
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


def malformed_row(item: Incoming, error: str, recorded_at: datetime) -> PreparedRow | None:
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
