"""Policy replay: recorded tool calls of a time range decided again by the draft or a version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.api.conftest import tool_call

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def recorded(acme, world):
    """Seven recorded calls (decided under v1: deny delete_*, else default deny) and one outside
    the range, one of another type and one refused by the kill switch."""
    from compliance.audit.writer import append_events

    key = str(world.key.id)

    def at(minutes, **data):
        return tool_call(acme, ts=T0 + timedelta(minutes=minutes), key_id=key, **data)

    events = [
        at(1, tool="read_file", decision="allow"),
        at(2, tool="read_file", decision="allow", server_slug="prod-db"),
        at(3, tool="delete_records", decision="deny", rule_id="deny-delete"),
        at(4, tool="write_file", decision="deny"),
        at(5, tool="deploy", decision="deny"),
        at(6, tool="write_file", decision="alert"),
        at(7, tool="read_file", decision="refused"),
        at(8, tool="read_file", decision="allow", type="mcp_request", method="tools/list"),
        tool_call(acme, ts=T0 - timedelta(days=1), tool="delete_records", decision="allow"),
    ]
    append_events(events)
    return events


REPLAY_RULES = [
    {"id": "no-prod", "action": "deny", "match": {"servers": ["prod-*"]}},
    {"id": "read", "action": "allow", "match": {"tools": ["read_*"]}},
    {"id": "ci-deploy", "action": "allow", "match": {"key_tags": ["ci"], "tools": ["deploy"]}},
    {"id": "writes", "action": "alert", "match": {"tools": ["write_*"]}},
]


def test_replay_reports_what_the_draft_would_have_changed(api, recorded):
    api.put("policies/draft/", {"rules": REPLAY_RULES})
    response = api.post(
        "policies/replay/",
        {"version": "draft", "from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["policy"] == "draft"
    assert (body["total"], body["evaluated"], body["skipped"]) == (7, 6, 1)
    # read_file allow->allow; prod read allow->deny; delete deny->deny (default); write_file
    # deny->alert; deploy (ci-tagged key) deny->allow; write_file alert->alert.
    assert (body["newly_denied"], body["newly_allowed"], body["unchanged"]) == (1, 2, 3)
    assert body["per_rule"] == {
        "read": 1,
        "no-prod": 1,
        "(default)": 1,
        "writes": 2,
        "ci-deploy": 1,
    }
    changes = [
        (e["tool"], e["old_decision"], e["new_decision"], e["new_rule_id"])
        for e in body["examples"]
    ]
    assert changes == [
        ("read_file", "allow", "deny", "no-prod"),
        ("write_file", "deny", "alert", "writes"),
        ("deploy", "deny", "allow", "ci-deploy"),
    ]
    seqs = [e["seq"] for e in body["examples"]]
    assert seqs == sorted(seqs)


def test_replay_of_the_recorded_version_changes_nothing_it_decided(api, recorded):
    body = api.post(
        "policies/replay/",
        {"version": 1, "from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()},
    ).json()
    # v1 denies delete_* and everything else by default posture: the two recorded allows of
    # read_file and the alert flip to deny; the denies stay.
    assert (body["newly_denied"], body["newly_allowed"], body["unchanged"]) == (3, 0, 3)


def test_replay_refuses_a_range_over_31_days(api, recorded):
    response = api.post(
        "policies/replay/",
        {"from": T0.isoformat(), "to": (T0 + timedelta(days=31, seconds=1)).isoformat()},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "range_too_large"


def test_replay_refuses_too_many_events(api, recorded, monkeypatch):
    from compliance.api import replay as compliance_api

    monkeypatch.setattr(compliance_api, "REPLAY_MAX_EVENTS", 6)
    response = api.post(
        "policies/replay/", {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
    )
    assert (response.status_code, response.json()["code"]) == (422, "too_many_events")
    monkeypatch.setattr(compliance_api, "REPLAY_MAX_EVENTS", 7)
    response = api.post(
        "policies/replay/", {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
    )
    assert response.status_code == 200


def test_replay_of_an_unknown_version_names_the_field(api, recorded):
    response = api.post(
        "policies/replay/",
        {"version": 5, "from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "version"
