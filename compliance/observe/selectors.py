"""The /observe/ dashboard's reads, scoped to one organisation: counters, latency percentiles, the
series of calls by decision, top lists and the risk heat map over a window.

Every figure comes from the rollups (compliance/observe/rollups.py) and the anomaly table, never
from the audit table: a page costs the same whether the organisation stored a thousand events or
a hundred million. Six queries whatever the window: the series (per bucket and decision, with
the counters), the combinations (per server, tool, key, decision and rule: the top lists and the
tool columns of the heat map), the heat map's time columns for its rows, the latency histograms,
the anomalies, and the names of the keys shown.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

from django.db.models import Count, Sum
from django.db.models.functions import TruncHour, TruncMinute

from compliance.models import (
    LATENCY_TOTAL_COLUMNS,
    LATENCY_UPSTREAM_COLUMNS,
    CallHour,
    CallMinute,
    LatencyMinute,
)
from compliance.observe.histogram import percentile
from compliance.observe.risk import Cell, level
from compliance.observe.windows import Window
from governance.models import Anomaly, ApiKey

Rows = Literal["servers", "agents"]
Columns = Literal["time", "tools"]

AUDIT_PATH = "/audit/"
TOP = 8  # entries in each top list
HEAT_ROWS = 12  # rows of the heat map: the riskiest servers or agents
HEAT_TOOL_COLUMNS = 10  # tool columns of the heat map: the riskiest tools
TEXT_ALTERNATIVE_CELLS = 10
DRIFT_KIND = "tool_drift"
# Decisions drawn as their own series; the rest are summed as "other".
SERIES_DECISIONS = ("allow", "alert", "deny", "rate_limited", "refused")
NO_KEY = "(no key)"
DEFAULT_POSTURE = "(default posture)"

_COUNTS = {
    "calls": Sum("calls"),
    "denials": Sum("denials"),
    "alerts": Sum("alerts"),
    "errors": Sum("errors"),
    "destructive": Sum("destructive"),
}


# The audit page's names for the figures' keys: a server by its slug, a period's ends.
AUDIT_PARAMS = {"server": "server_slug", "from": "since", "to": "until"}


def audit_url(**filters: Any) -> str:
    """The audit log filtered to the rows behind a figure
    (`/audit/?server_slug=…&since=…&until=…`)."""
    params = {}
    for name, value in filters.items():
        if value in (None, ""):
            continue
        name = AUDIT_PARAMS.get(name, name)
        params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return f"{AUDIT_PATH}?{urlencode(params)}" if params else AUDIT_PATH


@dataclass(slots=True)
class SeriesBucket:
    start: datetime
    by_decision: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_decision.values())


@dataclass(slots=True)
class TopEntry:
    label: str
    detail: str
    calls: int
    denials: int
    errors: int
    url: str


@dataclass(slots=True)
class HeatCell:
    row: str
    column: str
    cell: Cell
    url: str
    level: int = 0


@dataclass(slots=True)
class HeatMap:
    rows: Rows
    columns: Columns
    row_labels: list[tuple[str, str]]  # (value, label)
    column_labels: list[tuple[str, str]]
    cells: list[list[HeatCell]]
    highest: int

    @property
    def labelled_rows(self) -> list[tuple[str, list[HeatCell]]]:
        return [
            (label, row) for (_value, label), row in zip(self.row_labels, self.cells, strict=True)
        ]

    @property
    def top_cells(self) -> list[HeatCell]:
        scored = [c for row in self.cells for c in row if c.cell.score > 0]
        scored.sort(key=lambda c: (-c.cell.score, -c.cell.calls, c.row, c.column))
        return scored[:TEXT_ALTERNATIVE_CELLS]


@dataclass(slots=True)
class Dashboard:
    window: Window
    counters: dict[str, int]
    latency: dict[str, dict[str, float | None]]
    series: list[SeriesBucket]
    series_decisions: list[str]
    top_tools: list[TopEntry]
    top_agents: list[TopEntry]
    top_rules: list[TopEntry]
    heatmap: HeatMap


def _model(window: Window) -> type[CallMinute] | type[CallHour]:
    return CallMinute if window.spec.grain == "minute" else CallHour


def _in_window(window: Window) -> dict[str, Any]:
    return {"bucket__gte": window.start, "bucket__lt": window.end}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _key_names(org_id: Any, key_ids: Iterable[str]) -> dict[str, str]:
    ids = set()
    for key_id in key_ids:
        try:
            ids.add(uuid.UUID(key_id))
        except ValueError:
            continue
    if not ids:
        return {}
    names = ApiKey.objects.filter(org_id=org_id, id__in=ids).values_list("id", "name")
    return {str(key_id): name for key_id, name in names}


def _anomalies(org_id: Any, window: Window) -> list[dict[str, Any]]:
    trunc = TruncMinute if window.spec.grain == "minute" else TruncHour
    return list(
        Anomaly.objects.filter(
            org_id=org_id, created_at__gte=window.start, created_at__lt=window.end
        )
        .values("kind", "server_slug", "tool", "session__key_id")
        .annotate(at=trunc("created_at", tzinfo=UTC), n=Count("id"))
        .order_by()
    )


def _latency(org_id: Any, window: Window) -> dict[str, dict[str, float | None]]:
    columns = (*LATENCY_TOTAL_COLUMNS, *LATENCY_UPSTREAM_COLUMNS)
    sums = LatencyMinute.objects.filter(org_id=org_id, **_in_window(window)).aggregate(
        **{name: Sum(name) for name in columns}
    )
    out = {}
    for label, names in (("total", LATENCY_TOTAL_COLUMNS), ("upstream", LATENCY_UPSTREAM_COLUMNS)):
        counts = [sums[name] or 0 for name in names]
        out[label] = {
            "p50": percentile(counts, 0.50),
            "p95": percentile(counts, 0.95),
            "p99": percentile(counts, 0.99),
        }
    return out


def _series(org_id: Any, window: Window) -> tuple[list[SeriesBucket], list[str], dict[str, int]]:
    model = _model(window)
    rows = (
        model.objects.filter(org_id=org_id, **_in_window(window))
        .values("bucket", "decision")
        .annotate(**_COUNTS)
        .order_by()
    )
    buckets = [SeriesBucket(start) for start in window.buckets]
    counters = dict.fromkeys(("calls", "denials", "alerts", "errors", "destructive"), 0)
    seen: set[str] = set()
    for row in rows:
        index = window.bucket_index(_aware(row["bucket"]))
        if index is None:
            continue
        decision = row["decision"] if row["decision"] in SERIES_DECISIONS else "other"
        seen.add(decision)
        by = buckets[index].by_decision
        by[decision] = by.get(decision, 0) + row["calls"]
        for name in counters:
            counters[name] += row[name] or 0
    decisions = [d for d in (*SERIES_DECISIONS, "other") if d in seen]
    return buckets, decisions, counters


def _row_label(rows: Rows, value: str, names: dict[str, str]) -> str:
    if rows == "servers":
        return value or "(no server)"
    return names.get(value, value[:8] if value else NO_KEY)


def dashboard(
    *, org_id: Any, window: Window, rows: Rows = "servers", columns: Columns = "time"
) -> Dashboard:
    """Everything the /observe/ page shows for `org_id` over `window`."""
    model = _model(window)
    series, decisions, counters = _series(org_id, window)
    combos = list(
        model.objects.filter(org_id=org_id, **_in_window(window))
        .values("server_slug", "tool", "key_id", "decision", "rule_id")
        .annotate(**_COUNTS)
        .order_by()
    )
    anomalies = _anomalies(org_id, window)
    counters["anomalies"] = sum(a["n"] for a in anomalies if a["kind"] != DRIFT_KIND)
    counters["drift"] = sum(a["n"] for a in anomalies if a["kind"] == DRIFT_KIND)

    # Top lists, from the combinations.
    tools: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    agents: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    rules: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for combo in combos:
        triple = (combo["calls"], combo["denials"], combo["errors"])
        for table, key in (
            (tools, (combo["server_slug"], combo["tool"])),
            (agents, combo["key_id"]),
        ):
            entry = table[key]  # type: ignore[index]
            for i, value in enumerate(triple):
                entry[i] += value
        if combo["denials"]:
            entry = rules[combo["rule_id"]]
            entry[0] += combo["denials"]
            entry[1] += combo["denials"]
    period = {"from": window.start, "to": window.end}

    def ranked(table: dict[Any, list[int]], by: int) -> list[tuple[Any, list[int]]]:
        return sorted(table.items(), key=lambda kv: (-kv[1][by], str(kv[0])))[:TOP]

    # One query for the names of every key shown: the top agents and, by agent, the heat map's rows.
    heat_keys = set(agents) if rows == "agents" else set()
    names = _key_names(org_id, [k for k, _ in ranked(agents, 0)] + list(heat_keys))
    top_tools = [
        TopEntry(tool or "(none)", server, c, d, e, audit_url(server=server, tool=tool, **period))
        for (server, tool), (c, d, e) in ranked(tools, 0)
    ]
    top_agents = [
        TopEntry(_row_label("agents", key, names), key, c, d, e, audit_url(key=key, **period))
        for key, (c, d, e) in ranked(agents, 0)
    ]
    top_rules = [
        TopEntry(
            rule or DEFAULT_POSTURE,
            "",
            c,
            d,
            0,
            audit_url(decision="deny", **({"rule": rule} if rule else {}), **period),
        )
        for rule, (c, d, _e) in ranked(rules, 1)
    ]
    heatmap = _heatmap(org_id, window, rows, columns, combos, anomalies, names, model)
    return Dashboard(
        window=window,
        counters=counters,
        latency=_latency(org_id, window),
        series=series,
        series_decisions=decisions,
        top_tools=top_tools,
        top_agents=top_agents,
        top_rules=top_rules,
        heatmap=heatmap,
    )


def _add_counts(cell: Cell, row: dict[str, Any]) -> None:
    cell.calls += row["calls"] or 0
    cell.denials += row["denials"] or 0
    cell.errors += row["errors"] or 0
    cell.destructive += row["destructive"] or 0


def _add_anomaly(cell: Cell, anomaly: dict[str, Any]) -> None:
    if anomaly["kind"] == DRIFT_KIND:
        cell.drift += anomaly["n"]
    else:
        cell.anomalies += anomaly["n"]


def _heatmap(
    org_id: Any,
    window: Window,
    rows: Rows,
    columns: Columns,
    combos: list[dict[str, Any]],
    anomalies: list[dict[str, Any]],
    names: dict[str, str],
    model: type[CallMinute] | type[CallHour],
) -> HeatMap:
    row_field = "server_slug" if rows == "servers" else "key_id"
    anomaly_row = "server_slug" if rows == "servers" else "session__key_id"

    def row_of(anomaly: dict[str, Any]) -> str:
        value = anomaly[anomaly_row]
        return "" if value is None else str(value)

    # Rank rows (and tool columns) by their risk over the whole window.
    by_row: dict[str, Cell] = defaultdict(Cell)
    by_tool: dict[str, Cell] = defaultdict(Cell)
    for combo in combos:
        _add_counts(by_row[combo[row_field]], combo)
        _add_counts(by_tool[combo["tool"]], combo)
    for anomaly in anomalies:
        _add_anomaly(by_row[row_of(anomaly)], anomaly)
        if anomaly["tool"]:
            _add_anomaly(by_tool[anomaly["tool"]], anomaly)

    def riskiest(table: dict[str, Cell], limit: int) -> list[str]:
        ordered = sorted(table.items(), key=lambda kv: (-kv[1].score, -kv[1].calls, kv[0]))
        return [value for value, _ in ordered[:limit]]

    row_values = riskiest(by_row, HEAT_ROWS)
    row_labels = [(v, _row_label(rows, v, names)) for v in row_values]
    row_filter = "server" if rows == "servers" else "key"
    period = {"from": window.start, "to": window.end}
    grid: dict[tuple[str, str], Cell] = defaultdict(Cell)

    if columns == "tools":
        column_values = riskiest(by_tool, HEAT_TOOL_COLUMNS)
        column_labels = [(v, v or "(none)") for v in column_values]
        wanted_rows, wanted_cols = set(row_values), set(column_values)
        for combo in combos:
            if combo[row_field] in wanted_rows and combo["tool"] in wanted_cols:
                _add_counts(grid[(combo[row_field], combo["tool"])], combo)
        for anomaly in anomalies:
            if row_of(anomaly) in wanted_rows and anomaly["tool"] in wanted_cols:
                _add_anomaly(grid[(row_of(anomaly), anomaly["tool"])], anomaly)

        def cell_url(row: str, column: str) -> str:
            return audit_url(**{row_filter: row}, tool=column, **period)

    else:
        column_values = [b.isoformat() for b in window.buckets]
        fmt = "%H:%M" if window.spec.grain == "minute" else "%a %H:%M"
        column_labels = [
            (v, b.strftime(fmt)) for v, b in zip(column_values, window.buckets, strict=True)
        ]
        if row_values:
            timed = (
                model.objects.filter(
                    org_id=org_id, **_in_window(window), **{f"{row_field}__in": row_values}
                )
                .values("bucket", row_field)
                .annotate(**_COUNTS)
                .order_by()
            )
            for row in timed:
                index = window.bucket_index(_aware(row["bucket"]))
                if index is not None:
                    _add_counts(grid[(row[row_field], column_values[index])], row)
        wanted_rows = set(row_values)
        for anomaly in anomalies:
            index = window.bucket_index(_aware(anomaly["at"]))
            if index is not None and row_of(anomaly) in wanted_rows:
                _add_anomaly(grid[(row_of(anomaly), column_values[index])], anomaly)

        def cell_url(row: str, column: str) -> str:
            start = datetime.fromisoformat(column)
            return audit_url(**{row_filter: row}, **{"from": start, "to": start + window.spec.step})

    cells = [
        [HeatCell(r, c, grid.get((r, c)) or Cell(), cell_url(r, c)) for c, _ in column_labels]
        for r, _ in row_labels
    ]
    highest = max((c.cell.score for row in cells for c in row), default=0)
    for row in cells:
        for heat in row:
            heat.level = level(heat.cell.score, highest)
    return HeatMap(rows, columns, row_labels, column_labels, cells, highest)
