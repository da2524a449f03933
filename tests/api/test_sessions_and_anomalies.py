"""Agent sessions (filters, detail with recent calls, kill / suspend / resume, kill-all) and
anomalies (filters, acknowledge, resolve)."""

from __future__ import annotations

import pytest

from tests.api.conftest import session_api, tool_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def sessions(acme, world, alice):
    from governance.models import AgentSession
    from governance.services.servers import server_create

    other = server_create(
        org=acme, actor=alice, name="Other", slug="other", upstream_url="http://x.test/"
    )
    AgentSession.objects.create(
        id="sess-acme-2",
        org=acme,
        server=other,
        server_slug="other",
        era="modern",
        state="suspended",
    )
    return other


def test_sessions_are_filtered_by_state_server_and_key(api, world, sessions):
    def ids(**params):
        return [s["id"] for s in api.get("sessions/", **params).json()["results"]]

    assert sorted(ids()) == ["sess-acme-1", "sess-acme-2"]
    assert ids(state="suspended") == ["sess-acme-2"]
    assert ids(server=str(world.server.id)) == ["sess-acme-1"]
    assert ids(key=str(world.key.id)) == ["sess-acme-1"]
    assert ids(state="killed") == []


def test_a_sessions_detail_shows_its_last_fifty_calls_newest_first(api, acme, world):
    from compliance.audit.writer import append_events

    append_events([tool_call(acme, session_id="sess-acme-1", tool=f"t{i}") for i in range(55)])
    append_events([tool_call(acme, session_id="elsewhere", tool="other")])
    body = api.get("sessions/sess-acme-1/").json()
    assert body["id"] == "sess-acme-1"
    assert body["key"] == str(world.key.id)
    calls = body["recent_calls"]
    assert [c["tool"] for c in calls] == [f"t{i}" for i in range(54, 4, -1)]
    assert calls[0]["session_id"] == "sess-acme-1"
    assert calls[0]["ts"].endswith("Z")


def test_a_session_is_suspended_resumed_and_killed(api, world):
    from governance.models import AgentSession, PendingEvent

    path = "sessions/sess-acme-1/"
    assert api.post(path + "suspend/", {"reason": "odd"}).json()["state"] == "suspended"
    assert api.post(path + "suspend/").json()["code"] == "not_active"
    assert api.post(path + "resume/").json()["state"] == "active"
    killed = api.post(path + "kill/", {"reason": "enough"}).json()
    assert (killed["state"], killed["state_reason"]) == ("killed", "enough")
    assert killed["ended_at"] is not None
    assert AgentSession.objects.get(pk="sess-acme-1").state == "killed"
    types = [e.payload["type"] for e in PendingEvent.objects.order_by("id")]
    assert types[-3:] == ["session.suspended", "session.resumed", "session.killed"]
    again = api.post(path + "kill/")
    assert (again.status_code, again.json()["code"]) == (409, "already_killed")


@pytest.mark.parametrize("scope", ["key", "server", "org"])
def test_kill_all_stops_every_session_in_its_scope(api, world, sessions, scope):
    from governance.models import AgentSession

    target = {"key": world.key.id, "server": sessions.id, "org": None}[scope]
    body = {"scope": scope, "reason": "incident"}
    if target:
        body["id"] = str(target)
    answer = api.post("sessions/kill-all/", body).json()
    expected = {
        "key": {"sess-acme-1"},
        "server": {"sess-acme-2"},
        "org": {"sess-acme-1", "sess-acme-2"},
    }[scope]
    assert answer == {
        "scope": scope,
        "id": str(target) if target else None,
        "sessions_killed": len(expected),
    }
    killed = set(AgentSession.objects.filter(state="killed").values_list("id", flat=True))
    assert killed == expected


def test_a_ciso_may_kill_but_a_developer_may_not(client, world, bob, erin):
    from governance.models import AgentSession

    assert session_api(client, bob).post("sessions/sess-acme-1/kill/").status_code == 403
    assert AgentSession.objects.get(pk="sess-acme-1").state == "active"
    assert session_api(client, erin).post("sessions/sess-acme-1/kill/").status_code == 200


def test_anomalies_are_filtered_acknowledged_and_resolved(api, acme, world):
    from governance.models import Anomaly

    Anomaly.objects.create(org=acme, kind="tool_drift", status="resolved", note="old")
    ids = [a["id"] for a in api.get("anomalies/", status="open").json()["results"]]
    assert ids == [str(world.anomaly.id)]
    assert [a["kind"] for a in api.get("anomalies/", kind="tool_drift").json()["results"]] == [
        "tool_drift"
    ]
    path = f"anomalies/{world.anomaly.id}/"
    assert api.post(path + "acknowledge/").json()["status"] == "acknowledged"
    assert api.post(path + "acknowledge/").json()["code"] == "not_open"
    missing_note = api.post(path + "resolve/", {})
    assert missing_note.json()["errors"][0]["field"] == "note"
    resolved = api.post(path + "resolve/", {"note": "a load test"}).json()
    assert (resolved["status"], resolved["note"], resolved["resolved_by"]) == (
        "resolved",
        "a load test",
        "alice@acme.test",
    )
    world.anomaly.refresh_from_db()
    assert world.anomaly.status == "resolved"
