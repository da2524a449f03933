"""Canonical encoding and hash chaining of audit events: pure functions, no Django, no I/O.

This module is the specification an outside verifier reimplements (compliance-and-billing.md
section 4.3, "Canonicalisation"). An event is chained as

    hash = hex(SHA-256(prev_hash_hex_ascii || canonical(event)))

where `prev_hash` is the previous event's `hash` in the same organisation (64 lowercase hex
characters), or 64 zeros (`GENESIS`) for the organisation's first event (seq 1). Every stored
column except `hash` is covered, `seq`, `org_id` and `prev_hash` included: the names are
`CHAINED_FIELDS`, and a field that is absent (SQL NULL) is encoded as JSON `null`.

`canonical(value)` is a JSON text, encoded as UTF-8, in the style of RFC 8785 (JCS):

- no whitespace anywhere; object members sorted by key, comparing keys by Unicode code point
  (the same as comparing their UTF-8 bytes); keys must be strings;
- strings are written literally (no `\\u` escapes for non-ASCII); only `"`, `\\` and control
  characters below U+0020 are escaped: `\\b \\t \\n \\f \\r` by name, others as `\\u00xx`
  (lowercase hex); lone surrogates are refused;
- `true`, `false`, `null` as usual;
- numbers (this is where it differs from JCS): a number stands for the decimal value of its
  shortest round-trip form (a float's `repr`, an integer's digits), written in plain positional
  notation: no exponent, no `+`, no leading zeros, no trailing fractional zeros, no decimal point
  when the value is integral, and zero as `0`. So `12`, `12.0` and `1.2e1` all encode as `12`,
  and `1e-7` as `0.0000001`. NaN and infinities are refused. (This is what survives a round trip
  through PostgreSQL `jsonb`, which keeps numbers as exact decimals.)
- values that are not JSON get one fixed text form: an aware `datetime` becomes the UTC time
  `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six fractional digits; naive datetimes are refused), a
  `UUID` its lowercase hyphenated form; tuples are arrays. Anything else is refused.

Checkpoints sign `checkpoint_text(...)` with Ed25519 (RFC 8032); the signature is stored as hex.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

GENESIS = "0" * 64

# Every AuditEvent column except `hash`, in no particular order (the encoding sorts keys).
CHAINED_FIELDS: tuple[str, ...] = (
    "id",
    "org_id",
    "seq",
    "prev_hash",
    "ts",
    "recorded_at",
    "source",
    "type",
    "actor",
    "server_id",
    "server_slug",
    "session_id",
    "key_id",
    "method",
    "tool",
    "decision",
    "rule_id",
    "policy_version",
    "latency_ms",
    "upstream_ms",
    "upstream_status",
    "result",
    "request_bytes",
    "response_bytes",
    "args_digest",
    "arguments",
    "client_info",
    "protocol_version",
    "data",
)

SORTED_FIELDS: tuple[str, ...] = tuple(sorted(CHAINED_FIELDS))

_HEX = frozenset("0123456789abcdef")

# The C string encoder the json module uses with ensure_ascii=False: escapes exactly `"`, `\`
# and the C0 controls, as the encoding above requires.
_encode_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


class CanonicalError(ValueError):
    """The value cannot be encoded canonically (NaN, naive datetime, non-string key, ...)."""


def format_timestamp(value: datetime) -> str:
    """An aware datetime as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    offset = value.utcoffset()
    if offset is None:
        raise CanonicalError(f"naive datetime {value!r}: audit timestamps must be aware")
    if offset:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_number(value: int | float) -> str:
    """A number in plain positional notation of its shortest round-trip decimal form."""
    if isinstance(value, int):
        return str(int(value))
    if not math.isfinite(value):
        raise CanonicalError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))  # the common case: exact, and no Decimal needed
    text = repr(value)
    if "e" not in text:
        # Not integral and no exponent: repr is already the shortest round-trip form in plain
        # notation (no trailing zeros), which is what Decimal would write.
        return text
    return format(Decimal(text).normalize(), "f")


# --- the reference encoder: the specification above, value by value ---------------------------


def _encode(value: Any, out: Callable[[str], None]) -> None:
    kind = type(value)
    if kind is str:
        out(_encode_string(value))
    elif value is None:
        out("null")
    elif kind is dict:
        _encode_object(value, out)
    elif kind is bool:
        out("true" if value else "false")
    elif kind is int or kind is float:
        out(format_number(value))
    elif kind is list or kind is tuple:
        _encode_array(value, out)
    elif isinstance(value, uuid.UUID):
        out(f'"{value}"')
    elif isinstance(value, datetime):
        out(_encode_string(format_timestamp(value)))
    elif isinstance(value, str):
        out(_encode_string(str(value)))
    elif isinstance(value, Mapping):
        _encode_object(value, out)
    elif isinstance(value, bool):
        out("true" if value else "false")
    elif isinstance(value, int | float):
        out(format_number(value))
    elif isinstance(value, list | tuple):
        _encode_array(value, out)
    else:
        raise CanonicalError(f"{type(value).__name__} value {value!r} has no canonical form")


def _encode_object(value: Mapping[Any, Any], out: Callable[[str], None]) -> None:
    if not value:
        out("{}")
        return
    for key in value:
        if type(key) is not str:
            raise CanonicalError(f"object key {key!r} is not a string")
    separator = "{"
    for key in sorted(value):
        out(separator)
        out(_encode_string(key))
        out(":")
        _encode(value[key], out)
        separator = ","
    out("}")


def _encode_array(value: list[Any] | tuple[Any, ...], out: Callable[[str], None]) -> None:
    if not value:
        out("[]")
        return
    separator = "["
    for item in value:
        out(separator)
        _encode(item, out)
        separator = ","
    out("]")


def encode_reference(value: Any) -> str:
    """The canonical JSON text of one value, by the reference encoder (pure Python, slow)."""
    parts: list[str] = []
    try:
        _encode(value, parts.append)
    except RecursionError:
        raise CanonicalError("value is nested too deeply") from None
    return "".join(parts)


# --- the fast path: the C JSON encoder where its output provably matches ----------------------
#
# json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes strings, integers,
# booleans, null, arrays and objects exactly as specified above. It differs only for floats
# written with an exponent or a trailing ".0", non-string keys, and the non-JSON types; the first
# are spotted in the output (a false alarm inside a string only costs the slow path), the others
# make it raise. The property tests check both paths agree on arbitrary values.


def _default(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(type(value).__name__)


def _make_dumps() -> Callable[[Any], str]:
    # The C encoder built once, without the circular-reference check: a cycle cannot come out of
    # JSON, and a Python caller's cycle ends in RecursionError, which the fallback reports.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(
            ensure_ascii=False,
            allow_nan=False,
            sort_keys=True,
            separators=(",", ":"),
            default=_default,
        ).encode
    encoder = make(None, _default, _encode_string, None, ":", ",", True, False, False)
    return lambda value: "".join(encoder(value, 0))


_dumps = _make_dumps()
_FLOAT_NEEDING_CARE = re.compile(r"[:,\[]-?\d+(?:\.0|(?:\.\d+)?e[-+]\d+)[,\]}]")


def _keys_are_strings(value: Any) -> bool:
    if type(value) is dict:
        return all(type(k) is str for k in value) and all(
            _keys_are_strings(v) for v in value.values() if type(v) is dict or type(v) is list
        )
    if type(value) is list:
        return all(_keys_are_strings(v) for v in value if type(v) is dict or type(v) is list)
    return True


def encode_value(value: Any, *, keys_checked: bool = False) -> str:
    """The canonical JSON text of one value (a str, before UTF-8 encoding).

    `keys_checked=True` promises every object key is a string (true of anything json.loads
    produced, or PostgreSQL jsonb returned) and skips that walk.
    """
    kind = type(value)
    if kind is str:
        return _encode_string(value)  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if kind is int:
        return str(value)
    if kind is float:
        return format_number(value)
    if kind is uuid.UUID:
        return f'"{value}"'
    if kind is datetime:
        return f'"{format_timestamp(value)}"'
    if (kind is dict or kind is list) and (keys_checked or _keys_are_strings(value)):
        try:
            text: str = _dumps(value)
        except (TypeError, ValueError, RecursionError):
            pass  # the reference encoder says precisely what is wrong
        else:
            if not _FLOAT_NEEDING_CARE.search(text):
                return text
    return encode_reference(value)


# --- the fastest path, for values made of JSON types only: orjson ------------------------------
#
# orjson.dumps(OPT_SORT_KEYS) writes strings (the same escapes as above), integers, booleans, null,
# arrays and objects (keys sorted by UTF-8 bytes, i.e. by code point) exactly as specified, as
# UTF-8 bytes. It differs for floats written with an exponent or a trailing ".0" (spotted in the
# output, as above), for integers beyond 64 bits and lone surrogates (it raises), and it has its
# own forms for datetimes, dataclasses and subclasses, which are sent to the reference encoder.
# Its float digits are the shortest round-trip ones, as repr's; the property tests hold it to
# the reference encoder.

# orjson options that send the types it would write its own way to `default` (`not_json`).
ORJSON_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | ORJSON_PASSTHROUGH
_FLOAT_NEEDING_CARE_BYTES = re.compile(rb"[:,\[]-?\d+(?:\.0|(?:\.\d+)?e[-+]?\d+)[,\]}]")
# The same, fast: searches that start with a literal skip through the text in C, and only the
# places they find get the full pattern. orjson always signs its exponents; a mantissa and its
# delimiter take at most 24 bytes before the "e".
_POINT_ZERO = re.compile(rb"\.0[,\]}]")
_EXPONENT = re.compile(rb"e[-+]\d")


def _float_needs_care(out: bytes) -> bool:
    if _POINT_ZERO.search(out):
        return True
    for found in _EXPONENT.finditer(out):
        at = found.start()
        if _FLOAT_NEEDING_CARE_BYTES.search(out, max(0, at - 32), at + 32):
            return True
    return False


def not_json(value: Any) -> Any:
    """orjson's `default`: refuses every value orjson cannot write by itself."""
    raise TypeError(type(value).__name__)


def canonical_json_native(value: Any) -> bytes:
    """The canonical UTF-8 bytes of a value, for values made only of what JSON parsing yields
    (dict with string keys, list, str, int, float, bool, None); anything else still encodes
    right, through the reference encoder, only slower. Raises CanonicalError as `canonical`."""
    if type(value) is float:  # a bare number has no delimiters for the check below
        return format_number(value).encode("ascii")
    try:
        out = orjson.dumps(value, default=not_json, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError included
        pass
    else:
        if not _float_needs_care(out):
            return out
    try:
        return encode_value(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"string is not valid Unicode text: {exc}") from None


def encode_member(name: str, value: Any, *, keys_checked: bool = False) -> str:
    """One top-level member, `"name":value`, as it appears in `canonical`."""
    return f"{_encode_string(name)}:{encode_value(value, keys_checked=keys_checked)}"


def canonical_from_members(members: Iterable[str]) -> bytes:
    """Join members already in key order (see `SORTED_FIELDS`) into the canonical bytes."""
    try:
        return ("{" + ",".join(members) + "}").encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"string is not valid Unicode text: {exc}") from None


def canonical(event: Mapping[str, Any]) -> bytes:
    """The canonical UTF-8 bytes of an event: every key except `hash` (see module docstring)."""
    for key in event:
        if type(key) is not str:
            raise CanonicalError(f"object key {key!r} is not a string")
    return canonical_from_members(
        encode_member(key, event[key]) for key in sorted(event) if key != "hash"
    )


def is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


def link(prev_hash: str, canonical_bytes: bytes) -> str:
    """sha256(prev_hash as 64 ASCII hex characters || canonical bytes), as lowercase hex."""
    if not is_hash(prev_hash):
        raise ValueError(f"prev_hash must be 64 lowercase hex characters, got {prev_hash!r}")
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_bytes)
    return digest.hexdigest()


def event_hash(event: Mapping[str, Any]) -> str:
    """The hash an event must carry: `link(event["prev_hash"], canonical(event))`."""
    return link(event["prev_hash"], canonical(event))


def checkpoint_text(*, org_id: uuid.UUID | str, seq: int, hash: str, created_at: datetime) -> str:
    """The text a checkpoint signs (Ed25519), one item per line, no trailing newline."""
    lines = ["igris-audit", str(uuid.UUID(str(org_id))), str(int(seq)), hash]
    return "\n".join([*lines, format_timestamp(created_at)])


def signing_key_from_secret(secret: str) -> Ed25519PrivateKey:
    """The checkpoint signing key derived from a secret (for now the Django SECRET_KEY)."""
    seed = hashlib.sha256(b"igris-audit-checkpoint\x00" + secret.encode("utf-8")).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_text(private_key: Ed25519PrivateKey, text: str) -> str:
    return private_key.sign(text.encode("utf-8")).hex()


def signature_valid(public_key: Ed25519PublicKey, text: str, signature_hex: str) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), text.encode("utf-8"))
    except (InvalidSignature, ValueError):
        return False
    return True
