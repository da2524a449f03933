"""The sessions and anomalies consoles (lists, kill / suspend / resume, stops, triage, roles and
tenant isolation) and the playground page that drives the proxy from the browser."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.middleware import SESSION_ORG_KEY
from governance.models import AgentSession, Anomaly, Membership, PendingEvent
from governance.services.base import ServiceError
from governance.services.servers import server_create, server_update
from tests.conftest import _user, login

pytestmark = pytest.mark.django_db

LAYOUT_QUERIES = 4  # session, user, current membership + org, the user's organisations


def _text(response) -> str:
    return response.content.decode()


def _events(org, kind: str) -> list[dict]:
    return [
        e.payload
        for e in PendingEvent.objects.filter(org_id=org.id).order_by("id")
        if e.payload["type"] == kind
    ]


@pytest.fixture
def acme_server(acme, alice):
    return server_create(
        org=acme,
        actor=alice,
        name="Acme tools",
        slug="acme-tools",
        upstream_url="https://t.test/mcp",
    )


@pytest.fixture
def acme_db(acme, alice):
    return server_create(
        org=acme, actor=alice, name="Acme DB", slug="acme-db", upstream_url="https://d.test/mcp"
    )


def _session(org, server, sid: str, *, key=None, user=None, state="active", minutes_ago=0):
    now = timezone.now()
    return AgentSession.objects.create(
        id=sid,
        org=org,
        server=server,
        server_slug=server.slug,
        key=key,
        user=user,
        era="modern",
        protocol_version="2026-07-28",
        client_name="claude-code",
        client_version="2.1.0",
        state=state,
        calls=12,
        denied=2,
        errors=1,
        started_at=now - timedelta(minutes=minutes_ago),
        last_seen_at=now - timedelta(minutes=minutes_ago),
    )


@pytest.fixture
def s1(acme, acme_server, acme_key):
    return _session(acme, acme_server, "igs_test1", key=acme_key[0], minutes_ago=10)


@pytest.fixture
def s2(acme, acme_db, bob):
    return _session(acme, acme_db, "igs_test2", user=bob, minutes_ago=5)


# --- sessions list and detail --------------------------------------------------------------------


def test_the_sessions_page_lists_the_org_sessions_newest_first(client, alice, s1, s2):
    login(client, alice)
    response = client.get(reverse("console:sessions"))
    assert response.status_code == 200
    body = _text(response)
    table = re.search(r'data-testid="sessions-table">(.*?)</table>', body, re.S).group(1)
    assert table.index('data-session-id="igs_test2"') < table.index('data-session-id="igs_test1"')
    row = re.search(r'data-session-id="igs_test1">(.*?)</tr>', table, re.S).group(1)
    assert "<code>acme-tools</code>" in row
    assert "acme agents" in row
    assert "claude-code" in row and "2.1.0" in row
    assert "modern" in row and "2026-07-28" in row
    assert 'data-state="active"' in row
    assert re.search(r'title="calls">12</span> / <span title="denied"[^>]*>2</span>', row)
    assert ">Kill</button>" in row and ">Suspend</button>" in row
    row2 = re.search(r'data-session-id="igs_test2">(.*?)</tr>', table, re.S).group(1)
    assert "bob@acme.test" in row2


def test_the_sessions_page_filters_by_state_and_server(client, alice, acme, acme_db, s1, s2):
    _session(acme, acme_db, "igs_test3", state="killed")
    login(client, alice)
    body = _text(client.get(reverse("console:sessions"), {"state": "killed"}))
    assert body.count("data-session-id=") == 1 and 'data-session-id="igs_test3"' in body
    body = _text(client.get(reverse("console:sessions"), {"server": str(acme_db.id)}))
    assert re.findall(r'data-session-id="(\w+)"', body) == ["igs_test3", "igs_test2"]
    body = _text(client.get(reverse("console:sessions"), {"state": "nonsense"}))
    assert body.count("data-session-id=") == 3


def test_the_sessions_page_shows_fifty_a_page(client, alice, acme, acme_server):
    for n in range(51):
        _session(acme, acme_server, f"igs_bulk{n:02d}", minutes_ago=n)
    login(client, alice)
    first = _text(client.get(reverse("console:sessions")))
    assert first.count("data-session-id=") == 50
    assert "1\u201350 of 51" in first
    second = _text(client.get(reverse("console:sessions"), {"page": 2}))
    assert re.findall(r'data-session-id="(\w+)"', second) == ["igs_bulk50"]


def test_the_session_detail_page_shows_its_fields(client, alice, acme, s1):
    Anomaly.objects.create(org=acme, session=s1, kind="rate_spike", severity="high", tool="echo")
    login(client, alice)
    response = client.get(reverse("console:session_detail", args=["igs_test1"]))
    assert response.status_code == 200
    body = _text(response)
    details = re.search(r'data-testid="session-details">(.*?)</dl>', body, re.S).group(1)
    assert "Acme tools" in details and "acme agents" in details
    assert "claude-code 2.1.0" in details
    assert "12 <span" in details and "2 denied" in details and "1 errors" in details
    assert "rate_spike" in body


def test_charlie_gets_404_for_acme_sessions(client, charlie, globex, s1):
    login(client, charlie)
    assert client.get(reverse("console:session_detail", args=["igs_test1"])).status_code == 404
    for action in ("session_kill", "session_suspend", "session_resume"):
        response = client.post(reverse(f"console:{action}", args=["igs_test1"]), {"reason": "x"})
        assert response.status_code == 404, action
    assert "igs_test1" not in _text(client.get(reverse("console:sessions")))
    s1.refresh_from_db()
    assert s1.state == "active"


# --- kill, suspend, resume -----------------------------------------------------------------------


def test_killing_a_session_from_the_console_records_who_and_why(client, alice, acme, s1):
    login(client, alice)
    response = client.post(
        reverse("console:session_kill", args=["igs_test1"]),
        {"reason": "looping on delete", "next": reverse("console:session_detail", args=[s1.id])},
    )
    assert response.status_code == 302
    assert response.url == reverse("console:session_detail", args=[s1.id])
    s1.refresh_from_db()
    assert (s1.state, s1.state_reason) == ("killed", "looping on delete")
    assert s1.ended_at is not None
    event = _events(acme, "session.killed")[-1]
    assert event["data"] == {
        "session_id": "igs_test1",
        "server": "acme-tools",
        "reason": "looping on delete",
    }
    assert event["actor"]["label"] == "alice@acme.test"
    body = _text(client.get(response.url))
    assert "Killed session igs_test1" in body
    assert ">Kill</button>" not in body  # a killed session offers no more actions


def test_suspending_and_resuming_a_session(client, alice, acme, s1):
    login(client, alice)
    client.post(reverse("console:session_suspend", args=["igs_test1"]), {"reason": "check"})
    s1.refresh_from_db()
    assert (s1.state, s1.state_reason) == ("suspended", "check")
    body = _text(client.get(reverse("console:sessions")))
    row = re.search(r'data-session-id="igs_test1">(.*?)</tr>', body, re.S).group(1)
    assert ">Resume</button>" in row and ">Suspend</button>" not in row
    client.post(reverse("console:session_resume", args=["igs_test1"]))
    s1.refresh_from_db()
    assert (s1.state, s1.state_reason) == ("active", "")
    assert [
        e["type"]
        for e in PendingEvent.objects.filter(org_id=acme.id).values_list("payload", flat=True)
        if e["type"].startswith("session.")
    ] == ["session.suspended", "session.resumed"]


def test_resuming_an_active_session_says_why_not_and_changes_nothing(client, alice, acme, s1):
    login(client, alice)
    response = client.post(reverse("console:session_resume", args=["igs_test1"]), follow=True)
    assert "Only a suspended session can be resumed (this one is active)." in _text(response)
    s1.refresh_from_db()
    assert s1.state == "active"
    assert not _events(acme, "session.resumed")


def test_a_redirect_elsewhere_is_ignored(client, alice, s1):
    login(client, alice)
    response = client.post(
        reverse("console:session_suspend", args=["igs_test1"]), {"next": "https://evil.test/"}
    )
    assert response.url == reverse("console:sessions")


def test_bob_the_developer_cannot_kill_sessions(client, bob, acme, s1):
    login(client, bob)
    body = _text(client.get(reverse("console:sessions")))
    assert 'data-session-id="igs_test1"' in body
    assert ">Kill</button>" not in body and "Emergency stop" not in body
    for action in ("session_kill", "session_suspend"):
        response = client.post(reverse(f"console:{action}", args=["igs_test1"]), {"reason": "x"})
        assert response.status_code == 403
    response = client.post(
        reverse("console:sessions_stop"), {"scope": "org", "confirm_slug": "acme"}
    )
    assert response.status_code == 403
    s1.refresh_from_db()
    assert s1.state == "active"
    assert not _events(acme, "session.killed") and not _events(acme, "org.emergency_stop")


# --- stops ---------------------------------------------------------------------------------------


def test_stopping_a_key_kills_its_sessions_only(client, alice, acme, acme_key, s1, s2):
    login(client, alice)
    response = client.post(
        reverse("console:sessions_stop"),
        {"scope": "key", "key_id": str(acme_key[0].id), "reason": "leaked"},
        follow=True,
    )
    assert "Stopped the API key acme agents: killed 1 session;" in _text(response)
    s1.refresh_from_db()
    s2.refresh_from_db()
    assert (s1.state, s1.state_reason, s2.state) == ("killed", "leaked", "active")
    assert _events(acme, "session.killed_for_key")[-1]["data"]["sessions"] == 1


def test_stopping_a_server_kills_its_sessions(client, alice, acme, acme_db, s1, s2):
    login(client, alice)
    client.post(reverse("console:sessions_stop"), {"scope": "server", "server_id": str(acme_db.id)})
    s1.refresh_from_db()
    s2.refresh_from_db()
    assert (s1.state, s2.state) == ("active", "killed")
    assert _events(acme, "session.killed_for_server")[-1]["data"]["server"] == "acme-db"


def test_the_emergency_stop_needs_the_org_slug(client, alice, acme, s1, s2):
    login(client, alice)
    response = client.post(
        reverse("console:sessions_stop"),
        {"scope": "org", "confirm_slug": "acme-corp", "reason": "panic"},
    )
    assert response.status_code == 200
    assert "Type &#x27;acme&#x27; exactly to stop every agent." in _text(response)
    assert set(AgentSession.objects.values_list("state", flat=True)) == {"active"}
    assert not _events(acme, "org.emergency_stop")

    response = client.post(
        reverse("console:sessions_stop"),
        {"scope": "org", "confirm_slug": "acme", "reason": "panic"},
        follow=True,
    )
    assert "Emergency stop: killed 2 sessions." in _text(response)
    assert set(AgentSession.objects.values_list("state", flat=True)) == {"killed"}
    assert _events(acme, "org.emergency_stop")[-1]["data"] == {"sessions": 2, "reason": "panic"}


def test_lifting_stops(client, alice, acme, acme_key, acme_server):
    login(client, alice)
    for target in ("org", f"key:{acme_key[0].id}", f"server:{acme_server.id}"):
        response = client.post(reverse("console:sessions_lift"), {"target": target}, follow=True)
        assert "Lifted" in _text(response), target
    lifted = [e["data"] for e in _events(acme, "kill.lifted")]
    assert lifted == [
        {"scope": "org", "target_id": None},
        {"scope": "key", "target_id": str(acme_key[0].id)},
        {"scope": "server", "target_id": str(acme_server.id)},
    ]
    response = client.post(reverse("console:sessions_lift"), {"target": "key:not-a-uuid"})
    assert response.status_code == 302
    assert len(_events(acme, "kill.lifted")) == 3


def test_charlie_cannot_stop_acme_keys_or_servers(
    client, charlie, globex, acme, acme_key, acme_server, s1
):
    login(client, charlie)
    response = client.post(
        reverse("console:sessions_stop"),
        {"scope": "key", "key_id": str(acme_key[0].id)},
        follow=True,
    )
    assert "Choose one of the organisation&#x27;s API keys." in _text(response)
    response = client.post(
        reverse("console:sessions_stop"),
        {"scope": "server", "server_id": str(acme_server.id)},
        follow=True,
    )
    assert "Choose one of the organisation&#x27;s MCP servers." in _text(response)
    response = client.post(
        reverse("console:sessions_lift"), {"target": f"key:{acme_key[0].id}"}, follow=True
    )
    assert "No such API key in this organisation." in _text(response)
    s1.refresh_from_db()
    assert s1.state == "active"
    assert not PendingEvent.objects.filter(
        org_id=acme.id, payload__type__startswith="kill"
    ).exists()
    assert not _events(acme, "session.killed_for_key")


def test_the_sessions_page_query_count_does_not_grow_with_sessions(
    client, alice, acme, acme_server, acme_key, bob, django_assert_num_queries
):
    for n in range(6):
        _session(acme, acme_server, f"igs_q{n}", key=acme_key[0] if n % 2 else None, user=bob)
    login(client, alice)
    client.get(reverse("console:sessions"))
    # layout + servers + count + page with servers, keys and users + keys for the stop panel
    with django_assert_num_queries(LAYOUT_QUERIES + 4):
        response = client.get(reverse("console:sessions"))
    assert _text(response).count("data-session-id=") == 6


# --- anomalies -----------------------------------------------------------------------------------


@pytest.fixture
def anomalies(acme, s1):
    spike = Anomaly.objects.create(
        org=acme,
        session=s1,
        server_slug="acme-tools",
        kind="rate_spike",
        severity="high",
        tool="query_records",
        detail={"calls": 340, "window_s": 60, "baseline": 12},
    )
    drift = Anomaly.objects.create(
        org=acme,
        server_slug="acme-tools",
        kind="tool_drift",
        severity="medium",
        tool="echo",
        detail={"field": "description"},
    )
    return spike, drift


def test_the_anomalies_page_lists_and_filters(client, alice, anomalies):
    spike, drift = anomalies
    login(client, alice)
    response = client.get(reverse("console:anomalies"))
    assert response.status_code == 200
    body = _text(response)
    row = re.search(rf'data-anomaly-id="{spike.id}">(.*?)</tr>', body, re.S).group(1)
    assert "rate_spike" in row and 'data-severity="high"' in row
    assert reverse("console:session_detail", args=["igs_test1"]) in row
    assert "<code>acme-tools</code>" in row and "<code>query_records</code>" in row
    assert "baseline: 12 · calls: 340 · window_s: 60" in row
    assert 'data-status="open"' in row
    assert ">Acknowledge</button>" in row
    body = _text(client.get(reverse("console:anomalies"), {"kind": "tool_drift"}))
    assert re.findall(r'data-anomaly-id="(\d+)"', body) == [str(drift.id)]
    body = _text(client.get(reverse("console:anomalies"), {"status": "resolved"}))
    assert "No anomalies match these filters." in body


def test_acknowledging_and_resolving_an_anomaly(client, alice, acme, anomalies):
    spike, _drift = anomalies
    login(client, alice)
    response = client.post(reverse("console:anomaly_acknowledge", args=[spike.id]), follow=True)
    assert "Acknowledged the rate_spike anomaly." in _text(response)
    spike.refresh_from_db()
    assert spike.status == "acknowledged"
    assert _events(acme, "anomaly.acknowledged")[-1]["data"]["anomaly_id"] == spike.id

    response = client.post(
        reverse("console:anomaly_resolve", args=[spike.id]),
        {"note": "nightly import, expected"},
        follow=True,
    )
    assert "Resolved the rate_spike anomaly." in _text(response)
    spike.refresh_from_db()
    assert (spike.status, spike.note, spike.resolved_by) == (
        "resolved",
        "nightly import, expected",
        alice,
    )
    event = _events(acme, "anomaly.resolved")[-1]
    assert event["data"]["note"] == "nightly import, expected"
    assert event["actor"]["label"] == "alice@acme.test"


def test_resolving_needs_a_note_and_a_resolved_anomaly_stays_resolved(
    client, alice, acme, anomalies
):
    _spike, drift = anomalies
    login(client, alice)
    response = client.post(reverse("console:anomaly_resolve", args=[drift.id]), {"note": "  "})
    assert response.status_code == 302
    drift.refresh_from_db()
    assert drift.status == "open"
    client.post(reverse("console:anomaly_resolve", args=[drift.id]), {"note": "approved"})
    response = client.post(reverse("console:anomaly_acknowledge", args=[drift.id]), follow=True)
    assert "Only an open anomaly can be acknowledged (this one is resolved)." in _text(response)
    response = client.post(
        reverse("console:anomaly_resolve", args=[drift.id]), {"note": "again"}, follow=True
    )
    assert "This anomaly is already resolved." in _text(response)
    drift.refresh_from_db()
    assert (drift.status, drift.note) == ("resolved", "approved")
    assert len(_events(acme, "anomaly.resolved")) == 1


def test_only_anomaly_managers_triage(client, bob, acme, anomalies):
    spike, _drift = anomalies
    auditor = _user("dana@acme.test")
    Membership.objects.create(org=acme, user=auditor, role="auditor")
    for user in (bob, auditor):
        login(client, user)
        body = _text(client.get(reverse("console:anomalies")))
        assert f'data-anomaly-id="{spike.id}"' in body
        assert ">Acknowledge</button>" not in body and "/resolve/" not in body
        assert (
            client.post(reverse("console:anomaly_acknowledge", args=[spike.id])).status_code == 403
        )
        response = client.post(reverse("console:anomaly_resolve", args=[spike.id]), {"note": "x"})
        assert response.status_code == 403
    spike.refresh_from_db()
    assert spike.status == "open"


def test_charlie_gets_404_for_acme_anomalies(client, charlie, globex, anomalies):
    spike, _drift = anomalies
    login(client, charlie)
    assert "rate_spike" not in _text(client.get(reverse("console:anomalies")))
    assert client.post(reverse("console:anomaly_acknowledge", args=[spike.id])).status_code == 404
    response = client.post(reverse("console:anomaly_resolve", args=[spike.id]), {"note": "x"})
    assert response.status_code == 404
    spike.refresh_from_db()
    assert spike.status == "open"


def test_the_anomaly_services_refuse_another_orgs_anomaly(charlie, globex, anomalies):
    from governance.services.anomalies import anomaly_acknowledge

    spike, _drift = anomalies
    with pytest.raises(ServiceError, match="No such anomaly"):
        anomaly_acknowledge(org=globex, actor=charlie, anomaly=spike)
    spike.refresh_from_db()
    assert spike.status == "open"


def test_the_anomalies_page_query_count_does_not_grow_with_anomalies(
    client, alice, acme, s1, django_assert_num_queries
):
    for n in range(6):
        Anomaly.objects.create(
            org=acme,
            session=s1 if n % 2 else None,
            kind="rate_spike" if n % 3 else "destructive_pattern",
            status="resolved" if n == 5 else "open",
            resolved_by=alice if n == 5 else None,
            detail={"n": n},
        )
    login(client, alice)
    client.get(reverse("console:anomalies"))
    # layout + count + page with sessions and resolvers + kinds for the filter
    with django_assert_num_queries(LAYOUT_QUERIES + 3):
        response = client.get(reverse("console:anomalies"))
    assert _text(response).count("data-anomaly-id=") == 6


# --- the playground page -------------------------------------------------------------------------


def test_the_playground_page_hands_the_proxy_settings_to_its_script(
    client, bob, acme, acme_server, acme_db
):
    server_update(org=acme, actor=bob, server=acme_db, enabled=False)
    login(client, bob)
    home = _text(client.get(reverse("console:home")))
    assert f'href="{reverse("console:playground")}"' in home
    response = client.get(reverse("console:playground"), {"server": "acme-db"})
    assert response.status_code == 200
    body = _text(response)
    assert 'data-proxy-base="/proxy/"' in body and 'data-protocol="2026-07-28"' in body
    assert 'data-client-name="igris-playground"' in body
    assert 'src="/static/js/playground.js"' in body and "<script>" not in body
    # A disabled server is listed but cannot be chosen; the first enabled one is.
    assert '<option value="acme-tools" selected>' in body
    assert re.search(r'<option value="acme-db" disabled>Acme DB \(acme-db\) · disabled', body)
    # The proxy finds the organisation of a cookie-authenticated call in the session.
    assert client.session[SESSION_ORG_KEY] == str(acme.id)


def test_the_playground_is_for_members_who_may_use_it(client, acme, acme_server):
    auditor = _user("dana@acme.test")
    Membership.objects.create(org=acme, user=auditor, role="auditor")
    login(client, auditor)
    assert f'href="{reverse("console:playground")}"' not in _text(
        client.get(reverse("console:home"))
    )
    assert client.get(reverse("console:playground")).status_code == 403


def test_charlie_sees_only_globex_servers_in_the_playground(client, charlie, globex, acme_server):
    login(client, charlie)
    body = _text(client.get(reverse("console:playground"), {"server": "acme-tools"}))
    assert "acme-tools" not in body
    assert "No MCP servers yet." in body
