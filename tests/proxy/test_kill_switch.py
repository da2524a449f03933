"""Kill switch, suspension, rate limits and anomalies through the proxy, on real sockets."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from mcp.shared.exceptions import MCPError

from tests.proxy.conftest import mcp_client
from tests.proxy.test_proxy_e2e import _drain_events, _publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MODERN = {
    "MCP-Protocol-Version": "2026-07-28",
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
}


def _call(tool, args, id=1, client="raw"):
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": args,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": client, "version": "1"},
                },
            },
        }
    )


async def _post_call(http, token, tool, args, **kw):
    return await http.post(
        "/proxy/demo/mcp",
        content=_call(tool, args, **kw),
        headers={
            **MODERN,
            "Authorization": f"Bearer {token}",
            "Mcp-Method": "tools/call",
            "Mcp-Name": tool,
        },
    )


async def _session_of(key_id):
    from governance.models import AgentSession

    for _ in range(50):
        session = await sync_to_async(lambda: AgentSession.objects.filter(key_id=key_id).first())()
        if session is not None:
            return session
        await asyncio.sleep(0.1)
    raise AssertionError("the session was never recorded")


async def _sessions_of(key_id, count):
    from governance.models import AgentSession

    for _ in range(100):
        rows = await sync_to_async(list)(
            AgentSession.objects.filter(key_id=key_id).order_by("started_at")
        )
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} sessions, found {len(rows)}")


async def test_a_killed_modern_session_ends_and_the_agents_next_call_opens_a_new_one(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.services.sessions import session_kill

    await _publish(acme, alice, [], posture="allow")
    async with httpx.AsyncClient(base_url=igris_url) as http:
        first = await _post_call(http, acme_key[1], "echo", {"text": "one"})
        assert first.status_code == 200
        killed_id = first.headers["igris-session-id"]
        session = await _session_of(acme_key[0].pk)
        assert session.id == killed_id and session.era == "modern" and session.client_name == "raw"
        await sync_to_async(session_kill)(
            org=acme, actor=alice, session=session, reason="runaway agent"
        )
        second = await _post_call(http, acme_key[1], "echo", {"text": "two"})
        third = await _post_call(http, acme_key[1], "echo", {"text": "three"})

    assert second.status_code == 200 and "two" in second.text
    new_id = second.headers["igris-session-id"]
    assert new_id != killed_id and third.headers["igris-session-id"] == new_id
    old, new = await _sessions_of(acme_key[0].pk, 2)
    assert (old.id, old.state, old.state_reason, old.calls) == (
        killed_id,
        "killed",
        "runaway agent",
        1,
    )
    assert (new.id, new.state, new.generation, new.slot) == (new_id, "active", 1, killed_id)
    events = await _drain_events(acme.id)
    assert [e["session_id"] for e in events if e["type"] == "tool_call"] == [
        killed_id,
        new_id,
        new_id,
    ]
    await sync_to_async(connections.close_all)()


async def test_an_sdk_agent_whose_modern_session_is_killed_mid_call_is_told_and_goes_on(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.services.sessions import session_kill

    await _publish(acme, alice, [], posture="allow")
    async with mcp_client(f"{igris_url}/proxy/demo/mcp", acme_key[1], mode="2026-07-28") as client:
        await client.call_tool("echo", {"text": "hello"})
        session = await _session_of(acme_key[0].pk)
        call = asyncio.create_task(client.call_tool("slow", {"seconds": 30, "steps": 30}))
        await asyncio.sleep(1.0)
        await sync_to_async(session_kill)(org=acme, actor=alice, session=session, reason="drill")
        with pytest.raises(MCPError, match="killed by an operator: drill"):
            await asyncio.wait_for(call, timeout=20)
        # The same client, the same key: its next call is a new session, not a dead end.
        again = await client.call_tool("echo", {"text": "after the kill"})
        assert not again.is_error
    old, new = await _sessions_of(acme_key[0].pk, 2)
    assert old.id == session.id and old.state == "killed"
    assert new.state == "active" and new.id != session.id
    await sync_to_async(connections.close_all)()


async def test_a_killed_legacy_session_is_told_to_start_over_and_a_new_one_works(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.services.sessions import session_kill
    from tests.proxy.test_streams import _legacy_session

    await _publish(acme, alice, [], posture="allow")
    echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
    echo["params"] = {"name": "echo", "arguments": {"text": "hi"}}
    async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
        headers = await _legacy_session(http, acme_key[1])
        assert (await http.post("/proxy/demo/mcp", headers=headers, json=echo)).status_code == 200
        killed_id = headers["Mcp-Session-Id"]
        session = await _session_of(acme_key[0].pk)
        assert session.id == killed_id
        await sync_to_async(session_kill)(org=acme, actor=alice, session=session, reason="drill")

        refused = await http.post("/proxy/demo/mcp", headers=headers, json=echo)
        # MCP transports: 404 for a session id means "initialize a new session".
        assert refused.status_code == 404
        error = refused.json()["error"]
        assert error["code"] == -31003 and "drill" in error["message"]
        assert "new session" in error["message"]

        fresh = await _legacy_session(http, acme_key[1])
        assert fresh["Mcp-Session-Id"] != killed_id
        answer = await http.post("/proxy/demo/mcp", headers=fresh, json=echo)
        assert answer.status_code == 200 and "hi" in answer.text
        # The killed session stays killed.
        again = await http.post("/proxy/demo/mcp", headers=headers, json=echo)
        assert again.status_code == 404
    rows = await _sessions_of(acme_key[0].pk, 2)
    states = {row.id: row.state for row in rows}
    assert states == {killed_id: "killed", fresh["Mcp-Session-Id"]: "active"}
    await sync_to_async(connections.close_all)()


async def test_stopping_a_key_keeps_its_agents_out_until_lifted_then_they_start_afresh(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.services.sessions import kill_lift, sessions_kill_for_key

    await _publish(acme, alice, [], posture="allow")
    async with httpx.AsyncClient(base_url=igris_url) as http:
        first = await _post_call(http, acme_key[1], "echo", {"text": "one"})
        await _session_of(acme_key[0].pk)
        await sync_to_async(sessions_kill_for_key)(
            org=acme, actor=alice, key=acme_key[0], reason="leaked"
        )
        refused = await _post_call(http, acme_key[1], "echo", {"text": "two"})
        assert refused.status_code == 403 and "leaked" in refused.json()["error"]["message"]
        await sync_to_async(kill_lift)(org=acme, actor=alice, scope="key", target_id=acme_key[0].id)
        after = await _post_call(http, acme_key[1], "echo", {"text": "three"})
    assert after.status_code == 200
    assert after.headers["igris-session-id"] != first.headers["igris-session-id"]
    old, new = await _sessions_of(acme_key[0].pk, 2)
    assert (old.state, new.state) == ("killed", "active")
    await sync_to_async(connections.close_all)()


async def test_a_suspended_session_is_refused_until_resumed(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.services.sessions import session_resume, session_suspend

    await _publish(acme, alice, [], posture="allow")
    async with httpx.AsyncClient(base_url=igris_url) as http:
        assert (await _post_call(http, acme_key[1], "echo", {"text": "a"})).status_code == 200
        session = await _session_of(acme_key[0].pk)
        await sync_to_async(session_suspend)(
            org=acme, actor=alice, session=session, reason="review"
        )
        suspended = await _post_call(http, acme_key[1], "echo", {"text": "b"})
        assert suspended.status_code == 503 and suspended.json()["error"]["code"] == -31004
        await sync_to_async(session_resume)(org=acme, actor=alice, session=session)
        assert (await _post_call(http, acme_key[1], "echo", {"text": "c"})).status_code == 200
    await sync_to_async(connections.close_all)()


async def test_an_emergency_stop_closes_a_stream_mid_call(
    igris_url, demo_server, acme, alice, acme_key
):
    """A legacy SSE stream of a slow call is cut within a second of the organisation's stop."""
    from governance.services.sessions import kill_lift, org_emergency_stop

    await _publish(acme, alice, [], posture="allow")
    async with mcp_client(f"{igris_url}/proxy/demo/mcp", acme_key[1], mode="legacy") as client:
        call = asyncio.create_task(client.call_tool("slow", {"seconds": 30, "steps": 30}))
        await asyncio.sleep(1.0)
        await sync_to_async(org_emergency_stop)(org=acme, actor=alice, reason="incident 42")
        # The call takes 30 s when left alone: ending with the kill's error before that means
        # the stream was cut mid-call (how fast is measured in make bench, not here).
        with pytest.raises(MCPError, match="killed by an operator: incident 42"):
            await asyncio.wait_for(call, timeout=25)
    async with httpx.AsyncClient(base_url=igris_url) as http:
        refused = await _post_call(http, acme_key[1], "echo", {"text": "x"})
        assert refused.status_code == 403
        await sync_to_async(kill_lift)(org=acme, actor=alice, scope="org")
        assert (await _post_call(http, acme_key[1], "echo", {"text": "y"})).status_code == 200
    await sync_to_async(connections.close_all)()


async def test_a_rule_rate_limit_answers_429_with_retry_after(
    igris_url, demo_server, acme, alice, acme_key
):
    rules = [
        {
            "id": "slow-down",
            "action": "allow",
            "match": {"tools": ["echo"]},
            "rate_limit": {"limit": 3, "window_s": 60, "per": "key"},
        }
    ]
    await _publish(acme, alice, rules, posture="allow")
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answers = [
            await _post_call(http, acme_key[1], "echo", {"text": str(i)}, id=i) for i in range(4)
        ]
        other_tool = await _post_call(http, acme_key[1], "add", {"a": 1, "b": 2}, id=9)
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[3].headers["retry-after"]) >= 1
    assert answers[3].json()["error"]["code"] == -31005
    assert other_tool.status_code == 200
    events = await _drain_events(acme.id)
    assert [e["decision"] for e in events if e["type"] == "tool_call"].count("rate_limited") == 1
    await sync_to_async(connections.close_all)()


async def test_a_destructive_call_raises_an_anomaly_even_when_allowed(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.models import Anomaly

    await _publish(acme, alice, [], posture="allow")
    async with mcp_client(f"{igris_url}/proxy/demo/mcp", acme_key[1]) as client:
        await client.list_tools()
        result = await client.call_tool("delete_records", {"table": "tickets", "where": {"id": 1}})
        assert not result.is_error
        await client.call_tool("delete_records", {"table": "tickets", "where": {"id": 2}})
    for _ in range(50):
        anomalies = await sync_to_async(list)(Anomaly.objects.filter(org=acme))
        if anomalies:
            break
        await asyncio.sleep(0.1)
    assert [(a.kind, a.tool, a.severity) for a in anomalies] == [
        ("destructive_pattern", "delete_records", "high")
    ]
    events = await _drain_events(acme.id)
    assert [e["data"]["kind"] for e in events if e["type"] == "anomaly"] == ["destructive_pattern"]
    await sync_to_async(connections.close_all)()


async def test_a_denied_destructive_call_is_reported_as_attempted_and_denied(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.models import Anomaly

    rules = [{"id": "no-delete", "action": "deny", "match": {"tools": ["delete_*"]}}]
    await _publish(acme, alice, rules, posture="allow")
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await _post_call(
            http, acme_key[1], "delete_records", {"table": "tickets", "where": {"id": 1}}
        )
    assert answer.json()["result"]["isError"] is True
    for _ in range(50):
        anomaly = await sync_to_async(Anomaly.objects.filter(org=acme).first)()
        if anomaly is not None:
            break
        await asyncio.sleep(0.1)
    assert anomaly.detail["message"] == (
        "destructive tool 'delete_records' was attempted and denied (rule no-delete)"
    )
    assert anomaly.detail["denied"] is True
    await sync_to_async(connections.close_all)()


async def test_a_tool_whose_description_changed_is_blocked_until_approved(
    acme, alice, acme_key, transactional_db, igris_url
):
    from governance.models import Anomaly, Tool
    from governance.services.servers import server_create
    from governance.services.tools import tool_approve
    from igris_project.demo.upstream import build_demo_app
    from tests.support import serving

    await _publish(acme, alice, [], posture="allow")
    with serving(build_demo_app()) as port:
        await sync_to_async(server_create)(
            org=acme,
            actor=alice,
            name="Demo",
            slug="demo",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
        )
        async with mcp_client(f"{igris_url}/proxy/demo/mcp", acme_key[1]) as client:
            assert "echo" in {t.name for t in (await client.list_tools()).tools}
    with serving(build_demo_app(drift=True)) as port:
        from governance.models import McpServer
        from governance.services.servers import server_update

        server = await sync_to_async(McpServer.objects.get)(slug="demo", org=acme)
        await sync_to_async(server_update)(
            org=acme, actor=alice, server=server, upstream_url=f"http://127.0.0.1:{port}/mcp"
        )
        async with mcp_client(f"{igris_url}/proxy/demo/mcp", acme_key[1]) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "echo" not in names and "add" in names
            blocked = await client.call_tool("echo", {"text": "hi"})
            assert blocked.is_error and "igris:tool-drift" in blocked.content[0].text
            tool = await sync_to_async(Tool.objects.get)(server=server, name="echo")
            assert tool.state == "drifted" and tool.description != tool.approved_description
            await sync_to_async(tool_approve)(org=acme, actor=alice, tool=tool)
            await asyncio.sleep(0.5)
            allowed = await client.call_tool("echo", {"text": "hi"})
            assert not allowed.is_error
    kinds = await sync_to_async(list)(
        Anomaly.objects.filter(org=acme).values_list("kind", flat=True)
    )
    assert "tool_drift" in kinds
    await sync_to_async(connections.close_all)()


async def test_an_anomaly_can_suspend_the_session_automatically(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.models import AgentSession
    from governance.services.organizations import organization_update

    await _publish(acme, alice, [], posture="allow")
    await sync_to_async(organization_update)(org=acme, actor=alice, auto_suspend_on_anomaly=True)
    async with httpx.AsyncClient(base_url=igris_url) as http:
        first = await _post_call(
            http, acme_key[1], "delete_records", {"table": "tickets", "where": {"id": 3}}
        )
        assert first.status_code == 200
        for _ in range(50):
            answer = await _post_call(http, acme_key[1], "echo", {"text": "still there?"})
            if answer.status_code == 503:
                break
            await asyncio.sleep(0.1)
    assert answer.status_code == 503
    assert "automatic: destructive_pattern" in answer.json()["error"]["message"]
    session = await sync_to_async(AgentSession.objects.get)(pk=first.headers["igris-session-id"])
    assert session.state == "suspended" and session.state_reason == "automatic: destructive_pattern"
    await sync_to_async(connections.close_all)()


def test_session_counts_of_a_deleted_server_are_dropped_not_retried_forever(acme, alice):
    """The background flush must not wedge on a session whose server is gone."""
    from governance.models import AgentSession
    from proxy.sessions import _flush, _Pending

    alive = _Pending(
        org_id=str(acme.id),
        server_id=None,
        server_slug="x",
        key_id=None,
        user_id=None,
        era="modern",
        protocol_version="2026-07-28",
        calls=2,
    )
    orphan = _Pending(
        org_id=str(acme.id),
        server_id="00000000-0000-0000-0000-000000000001",
        server_slug="gone",
        key_id=None,
        user_id=None,
        era="modern",
        protocol_version="2026-07-28",
        calls=5,
    )
    _flush({"igm_orphan": orphan, "igm_alive": alive})
    assert not AgentSession.objects.filter(pk="igm_orphan").exists()
    assert AgentSession.objects.get(pk="igm_alive").calls == 2


def test_a_new_session_never_starts_after_it_was_last_seen(acme, alice):
    """The row is written by the background flush, up to a second after the first call: it
    starts when the call was seen, not when the row was written."""
    from governance.models import AgentSession
    from proxy.sessions import _flush, _Pending

    seen = _Pending(
        org_id=str(acme.id),
        server_id=None,
        server_slug="demo",
        key_id=None,
        user_id=None,
        era="modern",
        protocol_version="2026-07-28",
        calls=1,
    )
    time.sleep(0.05)  # the flush comes after the call, as it does in the proxy
    _flush({"igm_seen": seen})
    row = AgentSession.objects.get(pk="igm_seen")
    assert row.started_at <= row.last_seen_at
    assert row.started_at == seen.started
