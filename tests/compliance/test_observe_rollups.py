"""The observe rollups: the audit writer counts each stored tool call once, in the transaction
that stores it, and the dashboard's selectors read windows exactly at their edges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum

from compliance.audit import store
from compliance.audit.writer import append_events
from compliance.models import CallHour, CallMinute, LatencyMinute
from compliance.observe import histogram, selectors
from compliance.observe.risk import Cell, level
from compliance.observe.windows import BadWindow, window_for
from governance.events import Actor, Envelope
from governance.models import Anomaly

KEY = str(uuid.uuid4())
AGENT = Actor(kind="api_key", id=KEY, label="acme agents")
NOW = datetime(2026, 3, 4, 10, 7, 30, tzinfo=UTC)


def call(org_id, *, ts: datetime = NOW, type: str = "tool_call", **data) -> dict:
    fields = {
        "server_slug": "github",
        "key_id": KEY,
        "method": "tools/call",
        "tool": "create_issue",
        "decision": "allow",
        "latency_ms": 12.0,
        "upstream_ms": 10.0,
        "result": "ok",
        **data,
    }
    envelope = Envelope(org_id=str(org_id), type=type, source="proxy", actor=AGENT, data=fields)
    return {**envelope.as_dict(), "ts": ts.isoformat()}


def minute_totals(org_id) -> dict:
    return CallMinute.objects.filter(org_id=org_id).aggregate(
        calls=Sum("calls"),
        denials=Sum("denials"),
        alerts=Sum("alerts"),
        errors=Sum("errors"),
        destructive=Sum("destructive"),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("insert", ["copy", "bulk"])
def test_the_writer_counts_each_stored_call_into_the_minute_and_hour_rollups(acme, insert):
    events = [
        call(acme.id),
        call(acme.id, latency_ms=30.0, upstream_ms=25.0),
        call(acme.id, decision="deny", rule_id="no-deletes", tool="delete_repo", result="denied"),
        call(acme.id, decision="alert", rule_id="watch-writes", tool="write_file"),
        call(acme.id, result="upstream_error", ts=NOW + timedelta(minutes=1)),
        call(acme.id, decision="rate_limited", result="error"),
    ]
    assert append_events(events, insert=insert) == 6

    assert minute_totals(acme.id) == {
        "calls": 6,
        "denials": 2,  # the deny and the rate limit; the rate limit's "error" is not an error
        "alerts": 1,
        "errors": 1,
        "destructive": 1,
    }
    allowed = CallMinute.objects.get(
        org_id=acme.id, bucket=NOW.replace(second=0), tool="create_issue", decision="allow"
    )
    assert (allowed.calls, allowed.latency_ms_sum, allowed.upstream_ms_sum) == (2, 42.0, 35.0)
    assert allowed.key_id == KEY and allowed.server_slug == "github" and allowed.rule_id == ""
    denied = CallMinute.objects.get(org_id=acme.id, decision="deny")
    assert (denied.rule_id, denied.tool, denied.denials, denied.destructive) == (
        "no-deletes",
        "delete_repo",
        1,
        1,
    )
    assert CallMinute.objects.filter(org_id=acme.id).count() == 5
    hours = CallHour.objects.filter(org_id=acme.id)
    assert {h.bucket for h in hours} == {NOW.replace(minute=0, second=0)}
    assert sum(h.calls for h in hours) == 6
    latency = LatencyMinute.objects.get(org_id=acme.id, bucket=NOW.replace(second=0))
    assert sum(getattr(latency, f"total_{i}") for i in range(histogram.BUCKETS)) == 5
    assert getattr(latency, f"total_{histogram.bucket_of(30.0)}") == 1


@pytest.mark.django_db
def test_a_redelivered_batch_adds_nothing(acme):
    events = [call(acme.id), call(acme.id, decision="deny", result="denied")]
    append_events(events)
    assert append_events(events) == 0
    assert minute_totals(acme.id)["calls"] == 2
    assert CallHour.objects.filter(org_id=acme.id).aggregate(n=Sum("calls"))["n"] == 2


@pytest.mark.django_db
def test_only_tool_calls_are_counted(acme):
    append_events(
        [
            call(acme.id, type="mcp_request", method="tools/list", tool=None),
            call(acme.id, type="anomaly", decision="observed", result="anomaly"),
            call(acme.id),
        ]
    )
    assert minute_totals(acme.id)["calls"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_fails_after_counting_leaves_no_counts(acme, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the database went away after the counts were written")

    monkeypatch.setattr(store, "_advance_heads", fail)
    with pytest.raises(RuntimeError):
        append_events([call(acme.id), call(acme.id)])
    assert not CallMinute.objects.filter(org_id=acme.id).exists()
    assert not CallHour.objects.filter(org_id=acme.id).exists()
    assert not LatencyMinute.objects.filter(org_id=acme.id).exists()


# --- windows ------------------------------------------------------------------------------------


def test_a_window_ends_with_the_bucket_that_holds_now():
    window = window_for("15m", NOW)
    assert window.end == datetime(2026, 3, 4, 10, 8, tzinfo=UTC)
    assert window.start == datetime(2026, 3, 4, 9, 53, tzinfo=UTC)
    week = window_for("7d", NOW)
    assert week.end == datetime(2026, 3, 4, 12, tzinfo=UTC)
    assert week.end - week.start == timedelta(days=7)


@pytest.mark.parametrize("key", ["", "1d", "15M", "7d;drop", "x" * 500])
def test_a_window_the_dashboard_does_not_offer_is_refused(key):
    with pytest.raises(BadWindow, match="window must be one of 15m, 1h, 24h, 7d"):
        window_for(key, NOW)


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        window_for("1h", NOW.replace(tzinfo=None))


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["15m", "1h", "24h", "7d"])
def test_the_counters_hold_the_calls_inside_the_window_and_none_outside(acme, globex, key):
    window = window_for(key, NOW)
    just_before = window.start - timedelta(microseconds=1)
    last = window.end - timedelta(microseconds=1)
    append_events(
        [
            call(acme.id, ts=just_before),
            call(acme.id, ts=window.start, decision="deny", result="denied"),
            call(acme.id, ts=last, result="tool_error"),
            call(acme.id, ts=window.end),
            call(globex.id, ts=window.start),
        ]
    )
    board = selectors.dashboard(org_id=acme.id, window=window)
    assert board.counters["calls"] == 2
    assert board.counters["denials"] == 1
    assert board.counters["errors"] == 1
    assert board.series[0].by_decision == {"deny": 1}
    assert board.series[-1].by_decision == {"allow": 1}
    assert sum(b.total for b in board.series) == 2


@pytest.mark.django_db
def test_globex_s_dashboard_shows_nothing_of_acme(acme, globex):
    append_events([call(acme.id, decision="deny", result="denied") for _ in range(3)])
    Anomaly.objects.create(org=acme, kind="rate_spike", server_slug="github", created_at=NOW)
    board = selectors.dashboard(org_id=globex.id, window=window_for("1h", NOW))
    assert board.counters == {
        "calls": 0,
        "denials": 0,
        "alerts": 0,
        "errors": 0,
        "destructive": 0,
        "anomalies": 0,
        "drift": 0,
    }
    assert board.top_tools == board.top_agents == board.top_rules == []
    assert board.heatmap.cells == []
    assert board.latency["total"]["p50"] is None


@pytest.mark.django_db
def test_the_heat_map_scores_cells_and_links_them_to_their_audit_rows(acme):
    window = window_for("1h", NOW)
    append_events(
        [
            call(acme.id, decision="deny", result="denied", tool="delete_repo"),
            call(acme.id, server_slug="files"),
            call(acme.id, server_slug="files", result="tool_error"),
        ]
    )
    Anomaly.objects.create(org=acme, kind="tool_drift", server_slug="files", created_at=NOW)
    board = selectors.dashboard(org_id=acme.id, window=window)
    heat = board.heatmap
    # files: 5 x 1 drift + 1 x 1 error; github: 3 x 1 denial + 2 x 1 destructive call
    assert [label for _, label in heat.row_labels] == ["files", "github"]
    files, github = heat.cells[0][-1], heat.cells[1][-1]
    assert (files.cell.score, files.level) == (6, 4)
    assert (github.cell.score, github.level) == (5, 4)  # ceil(4 x 5 / 6)
    assert all(c.cell.score == 0 and c.level == 0 for c in heat.cells[0][:-1])
    start = window.buckets[-1]
    assert github.url == selectors.audit_url(
        server="github", **{"from": start, "to": start + window.spec.step}
    )
    assert github.url.startswith(
        "/audit/?server_slug=github&since=2026-03-04T10%3A05%3A00%2B00%3A00"
    )
    assert [(c.row, c.cell.score) for c in heat.top_cells] == [("files", 6), ("github", 5)]

    by_tool = selectors.dashboard(org_id=acme.id, window=window, rows="agents", columns="tools")
    assert by_tool.heatmap.column_labels[0][1] == "delete_repo"
    cell = by_tool.heatmap.cells[0][0]
    assert "key=" + KEY in cell.url and "tool=delete_repo" in cell.url


@pytest.mark.django_db
def test_top_lists_rank_tools_agents_and_denied_rules(acme):
    append_events(
        [call(acme.id, tool="search") for _ in range(3)]
        + [call(acme.id, decision="deny", rule_id="no-deletes", result="denied") for _ in range(2)]
        + [call(acme.id, decision="deny", result="denied")]
    )
    board = selectors.dashboard(org_id=acme.id, window=window_for("15m", NOW))
    assert [(t.label, t.calls) for t in board.top_tools] == [("create_issue", 3), ("search", 3)]
    assert [(r.label, r.denials) for r in board.top_rules] == [
        ("no-deletes", 2),
        ("(default posture)", 1),
    ]
    assert board.top_agents[0].calls == 6


@pytest.mark.parametrize(
    ("values", "q", "low", "high"),
    [
        ([5.0] * 100, 0.5, 3.16, 5.63),
        ([1.0] * 50 + [100.0] * 50, 0.99, 56.2, 100.0),
        ([0.05], 0.5, 0.0, 0.1),
        ([500_000.0], 0.99, 100_000.0, 100_000.0),
    ],
)
def test_a_percentile_falls_in_the_bucket_of_the_true_value(values, q, low, high):
    counts = [0] * histogram.BUCKETS
    for value in values:
        counts[histogram.bucket_of(value)] += 1
    estimate = histogram.percentile(counts, q)
    assert estimate is not None and low <= estimate <= high


def test_an_empty_histogram_has_no_percentile():
    assert histogram.percentile([0] * histogram.BUCKETS, 0.5) is None


@pytest.mark.parametrize(
    ("score", "highest", "expected"), [(0, 10, 0), (1, 10, 1), (5, 10, 2), (10, 10, 4), (3, 0, 0)]
)
def test_a_cell_s_level_is_its_score_relative_to_the_highest(score, highest, expected):
    assert level(score, highest) == expected


def test_the_risk_score_weighs_each_signal_as_documented():
    assert Cell(denials=1, anomalies=1, drift=1, destructive=1, errors=1).score == 3 + 4 + 5 + 2 + 1
