"""The write side of the observe rollups: a batch of stored audit rows into counter deltas, added
to `CallMinute`, `CallHour` and `LatencyMinute` in the batch's own transaction.

Why rollups kept by the writer, in the same transaction (and not the alternatives):
- Reading the audit table per request (even with BRIN and (org, ts) indexes) costs in proportion
  to the window: 7 days of a busy organisation is millions of rows, far from 300 ms.
- A materialised view or a periodic job refreshing a summary table lags by its period, costs a
  scan per refresh, and needs its own bookkeeping of what it has already counted; a crash between
  the refresh and that bookkeeping double-counts or loses calls.
- A trigger on the audit table would do the same work per row instead of per batch, and exists
  only on PostgreSQL (the embedded default runs SQLite).
- Counters in Redis are fast but are not the record: they drift from the table after a crash or
  a redelivery.
The writer already holds each organisation's chain head lock while it stores a batch
(compliance/audit/store.py), so adding the batch's counts there is exactly once by construction:
the events and their counts commit or roll back together, a redelivered event is dropped by the
id check before it is counted, and no two writers ever update one organisation's rows at once.
The price is one upsert statement per table per batch (three per batch, whatever its size).

Only `tool_call` events are counted: they are the calls an agent made (proxied or ingested);
`mcp_request` (initialize, tools/list, pings) and governance events are not calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Model

from compliance.models import (
    LATENCY_TOTAL_COLUMNS,
    LATENCY_UPSTREAM_COLUMNS,
    CallHour,
    CallMinute,
    CallRollup,
    LatencyMinute,
)
from compliance.observe.histogram import BUCKETS, bucket_of
from governance.destructive import is_destructive_name

CALL_TYPE = "tool_call"
# Decisions that stopped a call before it reached the upstream: a policy deny, a rate limit, and
# a refusal (killed or suspended session, emergency stop).
DENIAL_DECISIONS = frozenset({"deny", "rate_limited", "refused"})
ALERT_DECISION = "alert"
# The proxy's outcomes that are failures of an allowed call (proxy/jsonrpc.result_outcome,
# proxy/forwarding.py): a JSON-RPC error, a tool result with isError, an unreachable upstream.
ERROR_RESULTS = frozenset({"error", "tool_error", "upstream_error"})

Key = tuple[str, datetime, str, str, str, str, str]


@dataclass(slots=True)
class Counts:
    calls: int = 0
    denials: int = 0
    alerts: int = 0
    errors: int = 0
    destructive: int = 0
    latency_ms_sum: float = 0.0
    upstream_ms_sum: float = 0.0
    upstream_calls: int = 0

    def values(self) -> tuple[Any, ...]:
        return (
            self.calls,
            self.denials,
            self.alerts,
            self.errors,
            self.destructive,
            self.latency_ms_sum,
            self.upstream_ms_sum,
            self.upstream_calls,
        )


@dataclass(slots=True)
class Deltas:
    """What one batch adds: counters per minute and per hour, histograms per (org, minute)."""

    minutes: dict[Key, Counts] = field(default_factory=dict)
    hours: dict[Key, Counts] = field(default_factory=dict)
    latency: dict[tuple[str, datetime], list[int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.minutes)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value == value else None


def _add(table: dict[Key, Counts], key: Key, row: dict[str, Any], flags: tuple[int, ...]) -> None:
    counts = table.get(key)
    if counts is None:
        counts = table[key] = Counts()
    denied, alerted, failed, destructive = flags
    counts.calls += 1
    counts.denials += denied
    counts.alerts += alerted
    counts.errors += failed
    counts.destructive += destructive
    latency = _number(row.get("latency_ms"))
    if latency is not None:
        counts.latency_ms_sum += latency
    upstream = _number(row.get("upstream_ms"))
    if upstream is not None:
        counts.upstream_ms_sum += upstream
        counts.upstream_calls += 1


def deltas(rows: Iterable[dict[str, Any]]) -> Deltas:
    """The counts `rows` (stored audit rows, as store.py has them) add. Pure: no database."""
    out = Deltas()
    empty_histogram = [0] * (2 * BUCKETS)
    for row in rows:
        if row.get("type") != CALL_TYPE:
            continue
        ts: datetime = row["ts"].astimezone(UTC)
        minute = ts.replace(second=0, microsecond=0)
        hour = minute.replace(minute=0)
        org = str(row["org_id"])
        decision = _text(row.get("decision"))
        tool = _text(row.get("tool"))
        dims = (
            _text(row.get("server_slug")),
            tool,
            _text(row.get("key_id")),
            decision,
            _text(row.get("rule_id")),
        )
        denied = decision in DENIAL_DECISIONS
        flags = (
            int(denied),
            int(decision == ALERT_DECISION),
            int(not denied and row.get("result") in ERROR_RESULTS),
            int(is_destructive_name(tool)),
        )
        _add(out.minutes, (org, minute, *dims), row, flags)
        _add(out.hours, (org, hour, *dims), row, flags)
        histogram = out.latency.get((org, minute))
        if histogram is None:
            histogram = out.latency[(org, minute)] = list(empty_histogram)
        latency = _number(row.get("latency_ms"))
        if latency is not None:
            histogram[bucket_of(latency)] += 1
        upstream = _number(row.get("upstream_ms"))
        if upstream is not None:
            histogram[BUCKETS + bucket_of(upstream)] += 1
    return out


# --- the upserts ----------------------------------------------------------------------------------

# Rows per INSERT statement: far below SQLite's 32,766 parameters (15 per counter row, 54 per
# histogram row); a writer batch (500 events) fits in one or two statements.
CHUNK_ROWS = 500


def _upsert_sql(model: type[Model], keys: Sequence[str], measures: Sequence[str], rows: int) -> str:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET m = t.m + excluded.m: the same text on
    PostgreSQL and SQLite (3.24+)."""
    table = connection.ops.quote_name(model._meta.db_table)
    columns = [*keys, *measures]
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(
        f"{connection.ops.quote_name(m)} = {table}.{connection.ops.quote_name(m)} + "
        f"excluded.{connection.ops.quote_name(m)}"
        for m in measures
    )
    conflict = ", ".join(connection.ops.quote_name(k) for k in keys)
    # Only quoted names from the model's metadata and placeholders go into the text.
    return (
        f"INSERT INTO {table} ({quoted}) VALUES {', '.join([one] * rows)} "  # noqa: S608
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )


def _db_values(model: type[Model], names: Sequence[str], values: Sequence[Any]) -> list[Any]:
    # UUIDs and datetimes as this database stores them (SQLite: hex text, ISO text).
    fields = {f.name: f for f in model._meta.concrete_fields}
    return [
        fields[name].get_db_prep_save(value, connection)
        for name, value in zip(names, values, strict=True)
    ]


def _upsert(
    model: type[Model],
    keys: Sequence[str],
    measures: Sequence[str],
    rows: Sequence[tuple[tuple[Any, ...], tuple[Any, ...]]],
) -> None:
    # Sorted, so two transactions touching the same rows lock them in the same order.
    ordered = sorted(rows, key=lambda r: tuple(str(v) for v in r[0]))
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), CHUNK_ROWS):
            chunk = ordered[start : start + CHUNK_ROWS]
            params: list[Any] = []
            for key, values in chunk:
                params += _db_values(model, keys, key)
                params += values
            cursor.execute(_upsert_sql(model, keys, measures, len(chunk)), params)


def apply(batch: Deltas) -> None:
    """Add the deltas to the rollup tables; call inside the batch's transaction."""
    if not batch:
        return
    keys, measures = CallRollup.DIMENSIONS, CallRollup.MEASURES
    _upsert(CallMinute, keys, measures, [(k, c.values()) for k, c in batch.minutes.items()])
    _upsert(CallHour, keys, measures, [(k, c.values()) for k, c in batch.hours.items()])
    _upsert(
        LatencyMinute,
        ("org_id", "bucket"),
        (*LATENCY_TOTAL_COLUMNS, *LATENCY_UPSTREAM_COLUMNS),
        [(k, tuple(h)) for k, h in batch.latency.items()],
    )


def record(rows: Iterable[dict[str, Any]]) -> None:
    """Count stored audit rows into the rollups (the audit writer, in its batch transaction)."""
    apply(deltas(rows))
