"""What a provider mapper produces: one `IngestItem` per accepted record, or a `Rejected` reason.

Pure: no Django. `check` applies the rules every item must meet whatever its provider, so the
audit writer never has to keep something as `audit.malformed` and never lifts a value into a
column it does not fit:

- `type`: lower-case letters, digits and `_ . : -`, at most 100 characters, outside igris' own
  namespaces (an outside system must not be able to write a `policy.published` or a `session.*`
  event into the organisation's log);
- `ts`: aware, at most five minutes in the future;
- the call fields (`server_slug`, `session_id`, `tool`, `decision`, `method`, `result`,
  `latency_ms`, `upstream_status`) have the type and length of their audit column, and a
  `decision` is one igris records itself (`governance.events.DECISIONS`), so the audit API's
  `decision` filter can list every value;
- no NUL character and no lone surrogate anywhere (PostgreSQL jsonb stores neither), and at most
  64 KiB of JSON per item.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from compliance.ingest import MAX_BODY_BYTES
from governance.events import DECISIONS, EVENT_TYPE, EVENT_TYPE_RULE
from governance.jsonsafe import unstorable_reason

MAX_ITEM_JSON = 64 * 1024
FUTURE_TOLERANCE = timedelta(minutes=5)
# igris' own event namespaces (governance services, the proxy, the audit writer, billing).
RESERVED_TYPES = frozenset({"anomaly", "audit", "tool_call", "mcp_request"})
RESERVED_PREFIXES = (
    "anomaly.",
    "api_key.",
    "audit.",
    "billing.",
    "ingest_source.",
    "invitation.",
    "kill.",
    "member.",
    "org.",
    "policy.",
    "server.",
    "session.",
    "tool.",
)
# Types ingestion itself produces (the mappers), allowed although some look reserved.
MAPPED_TYPES = frozenset({"tool_call", "mcp_request"})

# Call fields (audit columns) and what each may hold.
_TEXT_LIMITS = {
    "server_slug": 64,
    "session_id": 128,
    "tool": 256,
    "decision": 32,
    "method": 64,
    "result": 32,
}


class PayloadError(Exception):
    """The request as a whole cannot be read: answered with a problem, nothing stored."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One event to store: its audit type and time, the envelope data, who acted.

    `external_id` is the provider's own id of the record (span id, request id, log event id);
    the envelope id is derived from it so a redelivered record is stored once.
    """

    type: str
    ts: datetime
    data: dict[str, Any] = field(default_factory=dict)
    actor: dict[str, Any] | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str


Mapped = IngestItem | Rejected


@dataclass(frozen=True, slots=True)
class Batch:
    """A parsed request: its items in order; `control` marks a protocol no-op (CloudWatch's
    CONTROL_MESSAGE, an empty OTLP export) that is answered 200 with nothing stored."""

    items: list[Mapped]
    control: bool = False
    kinds: list[str] = field(default_factory=list)  # per item, where the format has several


# --- values ------------------------------------------------------------------------------------


def text(value: Any, limit: int = 200) -> str | None:
    """A non-empty string cut to `limit` characters, or None."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def number(value: Any) -> float | None:
    """A finite int or float (JSON numbers, or numeric strings as OTLP and CSV exports send)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    result = number(value)
    return int(result) if result is not None and result.is_integer() else None


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 / RFC 3339 timestamp with a time zone (`Z` accepted), else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def epoch_time(value: Any, unit: str) -> datetime | None:
    """A Unix time in `s`, `ms`, `us` or `ns` (int, float or numeric string), else None."""
    amount = number(value)
    if amount is None or amount <= 0:
        return None
    try:
        return datetime.fromtimestamp(amount / _UNITS[unit], tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def any_time(value: Any) -> datetime | None:
    """RFC 3339 text, or a Unix time whose unit is told by its size (s, ms, us or ns)."""
    moment = iso_time(value)
    if moment is not None:
        return moment
    amount = number(value)
    if amount is None or amount <= 0:
        return None
    # Today is about 1.8e9 s = 1.8e12 ms = 1.8e15 us = 1.8e18 ns.
    unit = "ns" if amount >= 1e17 else "us" if amount >= 1e14 else "ms" if amount >= 1e11 else "s"
    return epoch_time(amount, unit)


def fingerprint(record: Any) -> str:
    """A stable id for a record that carries none: the SHA-256 of its canonical JSON."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def compact(values: dict[str, Any]) -> dict[str, Any]:
    """The mapping without None values and empty containers."""
    return {k: v for k, v in values.items() if v is not None and v != {} and v != []}


def json_document(raw: Any) -> Any:
    """A JSON value given as itself or as JSON text (gateways embed bodies as strings)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            return None
    return raw


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise PayloadError(400, "malformed_payload", "The JSON is nested too deeply.") from None
    except ValueError as exc:
        raise PayloadError(
            400, "malformed_payload", f"The body is not valid JSON: {exc}."
        ) from None


def load_json_lines(body: bytes) -> list[Any]:
    """A JSON array, a single JSON object, or newline-delimited JSON (Logpush, exports)."""
    stripped = body.strip()
    if not stripped:
        raise PayloadError(400, "malformed_payload", "The body is empty.")
    if stripped[:1] in (b"[", b"{"):
        try:
            document = json.loads(stripped)
        except RecursionError:
            raise PayloadError(400, "malformed_payload", "The JSON is nested too deeply.") from None
        except ValueError:
            document = None  # several objects: NDJSON
        if isinstance(document, list):
            return document
        if document is not None:
            return [document]
    lines = [line for line in stripped.split(b"\n") if line.strip()]
    records: list[Any] = []
    for number_, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError):
            raise PayloadError(
                400, "malformed_payload", f"Line {number_} is not valid JSON (NDJSON expected)."
            ) from None
    return records


def gunzip(blob: bytes, *, what: str) -> bytes:
    """Decompress gzip (or zlib) data, refusing more than MAX_BODY_BYTES of output."""
    try:
        inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
        out = inflater.decompress(blob, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise PayloadError(400, "malformed_payload", f"{what} is not valid gzip data.") from None
    if len(out) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise PayloadError(
            413, "body_too_large", f"{what} decompresses to more than {MAX_BODY_BYTES} bytes."
        )
    return out


def b64_gunzip(value: Any, *, what: str) -> bytes:
    if not isinstance(value, str):
        raise PayloadError(400, "malformed_payload", f"{what} must be a base64 string.")
    try:
        blob = base64.b64decode(value, validate=True)
    except ValueError:
        raise PayloadError(400, "malformed_payload", f"{what} is not valid base64.") from None
    if blob[:2] != b"\x1f\x8b":
        raise PayloadError(400, "malformed_payload", f"{what} is not gzip-compressed.")
    return gunzip(blob, what=what)


# --- the rules every item meets ----------------------------------------------------------------


def _storable(value: Any) -> str | None:
    """Why a JSON value cannot be stored as it is, or None."""
    reason = unstorable_reason(value)
    return f"it {reason}" if reason else None


def type_problem(type_: Any) -> str | None:
    if not isinstance(type_, str) or not EVENT_TYPE.match(type_):
        return f"type must be {EVENT_TYPE_RULE}"
    if type_ in MAPPED_TYPES:
        return None
    if type_ in RESERVED_TYPES or type_.startswith(RESERVED_PREFIXES):
        return f"type '{type_}' is in a namespace igris reserves for its own events"
    return None


def check(mapped: Mapped, *, now: datetime) -> Mapped:
    """The item if it meets the common rules, else the reason it does not."""
    if isinstance(mapped, Rejected):
        return mapped
    problem = type_problem(mapped.type)
    if problem:
        return Rejected(problem)
    if mapped.ts.utcoffset() is None:
        return Rejected("ts has no time zone")
    if mapped.ts > now + FUTURE_TOLERANCE:
        return Rejected("ts is more than 5 minutes in the future")
    data = mapped.data
    for name, limit in _TEXT_LIMITS.items():
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or not value or len(value) > limit):
            return Rejected(f"{name} must be a non-empty string of at most {limit} characters")
    decision = data.get("decision")
    if decision is not None and decision not in DECISIONS:
        return Rejected(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    latency = data.get("latency_ms")
    if latency is not None and (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not math.isfinite(latency)
        or not 0 <= latency < 1e10
    ):
        return Rejected("latency_ms must be a non-negative number")
    status = data.get("upstream_status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 0 <= status < 1000
    ):
        return Rejected("upstream_status must be an HTTP status code")
    if mapped.type == "tool_call" and not data.get("tool"):
        return Rejected("a tool_call needs the tool's name")
    reason = _storable(data) or _storable(mapped.actor) or _storable(mapped.external_id)
    if reason:
        return Rejected(f"the item cannot be stored: {reason}")
    if len(json.dumps(data, ensure_ascii=False)) > MAX_ITEM_JSON:
        return Rejected(f"the item is larger than {MAX_ITEM_JSON // 1024} KiB of JSON")
    return mapped
