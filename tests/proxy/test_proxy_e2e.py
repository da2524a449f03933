"""The official SDK client through igris to an upstream built with the official SDK."""

from __future__ import annotations

import json

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.proxy.conftest import mcp_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MODES = ["auto", "legacy"]


async def _drain_events(org_id):
    """Everything the proxy made durable for this org (Redis stream in these tests)."""
    from django.conf import settings

    from governance.events import AUDIT_STREAM
    from governance.runtime.hotstate.redis import RedisHotState

    hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
    try:
        entries = await hs.stream_range(AUDIT_STREAM, "-", "+")
    finally:
        await hs.close()
    events = [json.loads(fields["event"]) for _, fields in entries]
    # Flattened for reading: the call's columns travel in the envelope's data.
    return [{**e["data"], **e} for e in events if e["org_id"] == str(org_id)]


async def _publish(org, alice, rules, posture="deny"):
    from governance.services.organizations import organization_update
    from governance.services.policies import policy_draft_update, policy_publish

    await sync_to_async(organization_update)(org=org, actor=alice, default_posture=posture)
    await sync_to_async(policy_draft_update)(org=org, actor=alice, rules=rules)
    return await sync_to_async(policy_publish)(org=org, actor=alice)


RULES = [
    {
        "id": "no-delete",
        "action": "deny",
        "message": "deleting records needs a human",
        "match": {"tools": ["delete_*"]},
    },
    {
        "id": "no-etc",
        "action": "deny",
        "message": "system files are off limits",
        "match": {
            "tools": ["read_file"],
            "arguments": [{"path": "path", "op": "glob", "value": "/config/*"}],
        },
    },
    {"id": "watch-writes", "action": "alert", "match": {"tools": ["write_file"]}},
    {"id": "allow-rest", "action": "allow", "match": {"tools": ["*"]}},
]


@pytest.mark.parametrize("mode", MODES)
async def test_an_allowed_call_goes_through_and_is_audited(
    igris_url, demo_server, acme, alice, acme_key, mode
):
    await _publish(acme, alice, RULES)
    url = f"{igris_url}/proxy/demo/mcp"
    async with mcp_client(url, acme_key[1], mode=mode) as client:
        result = await client.call_tool("echo", {"text": "hello through igris"})
        assert not result.is_error
        assert result.content[0].text == "hello through igris"
        added = await client.call_tool("add", {"a": 2, "b": 3})
        assert "5" in added.content[0].text
    events = await _drain_events(acme.id)
    calls = [e for e in events if e["type"] == "tool_call"]
    assert [c["tool"] for c in calls][:2] == ["echo", "add"]
    assert all(c["decision"] == "allow" and c["result"] == "ok" for c in calls)
    assert calls[0]["rule_id"] == "allow-rest" and calls[0]["policy_version"] == 1
    assert calls[0]["arguments"] == {"text": "hello through igris"}
    await sync_to_async(connections.close_all)()


@pytest.mark.parametrize("mode", MODES)
async def test_it_hides_tools_outside_the_policy_and_denies_calls_to_them(
    igris_url, demo_server, acme, alice, acme_key, mode
):
    await _publish(acme, alice, RULES)
    url = f"{igris_url}/proxy/demo/mcp"
    async with mcp_client(url, acme_key[1], mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "delete_records" not in names
        assert {
            "echo",
            "read_file",
            "write_file",
        } <= names  # read_file is denied only for some paths
        denied = await client.call_tool(
            "delete_records", {"table": "customers", "where": {"id": 1}}
        )
        assert denied.is_error
        assert "no-delete" in denied.content[0].text and "needs a human" in denied.content[0].text
        blocked = await client.call_tool("read_file", {"path": "/config/app.toml"})
        assert blocked.is_error and "no-etc" in blocked.content[0].text
        fine = await client.call_tool("read_file", {"path": "/docs/handbook.md"})
        assert not fine.is_error
        # The denied delete never reached the upstream: the rows are all still there.
        rows = await client.call_tool("query_records", {"table": "customers"})
        assert rows.structured_content["count"] == 4
    events = await _drain_events(acme.id)
    denials = [e for e in events if e["decision"] == "deny"]
    assert {(e["tool"], e["rule_id"]) for e in denials} == {
        ("delete_records", "no-delete"),
        ("read_file", "no-etc"),
    }
    assert all(e["policy_version"] == 1 for e in denials)
    await sync_to_async(connections.close_all)()


async def test_an_alert_rule_lets_the_call_through_and_records_the_alert(
    igris_url, demo_server, acme, alice, acme_key
):
    await _publish(acme, alice, RULES)
    async with mcp_client(f"{igris_url}/proxy/demo/mcp", acme_key[1]) as client:
        result = await client.call_tool("write_file", {"path": "/tmp/a.txt", "content": "x"})
        assert not result.is_error
    events = await _drain_events(acme.id)
    write = next(e for e in events if e["tool"] == "write_file")
    assert write["decision"] == "alert" and write["rule_id"] == "watch-writes"
    await sync_to_async(connections.close_all)()


@pytest.mark.parametrize("mode", MODES)
async def test_progress_notifications_arrive_through_the_proxy(
    igris_url, demo_server, acme, alice, acme_key, mode
):
    await _publish(acme, alice, [], posture="allow")
    seen: list[float] = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    async with mcp_client(f"{igris_url}/proxy/demo/mcp", acme_key[1], mode=mode) as client:
        result = await client.call_tool(
            "slow", {"seconds": 0.4, "steps": 4}, progress_callback=on_progress
        )
        assert not result.is_error
    assert seen == sorted(seen) and len(seen) == 4
    await sync_to_async(connections.close_all)()


async def test_a_globex_key_cannot_reach_acme_servers(igris_url, demo_server, globex_key):
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await http.post(
            "/proxy/demo/mcp",
            headers={
                "Authorization": f"Bearer {globex_key[1]}",
                "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json",
            },
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "x", "version": "1"},
                },
            },
        )
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "No MCP server 'demo' in this organisation."
    await sync_to_async(connections.close_all)()


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 401, "missing"),
        ({"Authorization": "Bearer ig_nope"}, 401, "malformed"),
        ({"Authorization": "Bearer ig_AAAAAAAA" + "x" * 40}, 401, "invalid"),
    ],
)
async def test_missing_or_bad_keys_get_401_with_resource_metadata(
    igris_url, demo_server, headers, status, reason
):
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await http.post(
            "/proxy/demo/mcp",
            headers={**headers, "Content-Type": "application/json"},
            content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
        )
        assert answer.status_code == status
        assert answer.json()["error"]["data"]["reason"] == reason
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith('Bearer resource_metadata="')
        meta_url = challenge.split('"')[1]
        assert meta_url.startswith(f"{igris_url}/.well-known/oauth-protected-resource/")
        meta = await http.get(meta_url)
        assert meta.status_code == 200
        assert meta.json()["resource"].endswith("/proxy/demo/mcp")
    await sync_to_async(connections.close_all)()


async def test_the_client_authorization_header_never_reaches_the_upstream(
    igris_url, acme, alice, acme_key
):
    """A recording upstream: it sees the server's own credential, never the agent's key."""
    from governance.services.servers import server_create
    from tests.support import serving

    seen: list[dict[str, str]] = []

    async def recorder(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        while (await receive()).get("more_body"):
            pass
        body = b'{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    with serving(recorder, lifespan="off") as port:
        await sync_to_async(server_create)(
            org=acme,
            actor=alice,
            name="Rec",
            slug="rec",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
            auth_type="bearer",
            credential="upstream-secret",
        )
        async with httpx.AsyncClient(base_url=igris_url) as http:
            answer = await http.post(
                "/proxy/rec/mcp",
                headers={
                    "Authorization": f"Bearer {acme_key[1]}",
                    "Content-Type": "application/json",
                    "Cookie": "igris.session_token=abc",
                    "MCP-Protocol-Version": "2026-07-28",
                    "Mcp-Method": "tools/list",
                },
                content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
            )
    assert answer.status_code == 200, answer.text
    assert len(seen) == 1
    assert seen[0]["authorization"] == "Bearer upstream-secret"
    assert "cookie" not in seen[0]
    assert acme_key[1] not in json.dumps(seen)
    await sync_to_async(connections.close_all)()


async def _raw(http, body, **headers):
    return await http.post("/proxy/demo/mcp", content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "extra", "status", "code"),
    [
        (b"{not json", {}, 400, -32700),
        (b'{"jsonrpc":"1.0","id":1,"method":"x"}', {}, 400, -32600),
        (b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]', {}, 400, -32600),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
            {"MCP-Protocol-Version": "1999-01-01"},
            400,
            -32022,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
            {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"},
            400,
            -32020,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}',
            {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "add"},
            400,
            -32020,
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
            {},
            400,
            -32600,
        ),  # legacy without a session
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
            {"Mcp-Session-Id": "igs_unknown"},
            404,
            -32600,
        ),
    ],
)
async def test_bad_input_gets_a_precise_json_rpc_error_and_is_audited(
    igris_url, demo_server, acme, acme_key, body, extra, status, code
):
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await _raw(
            http,
            body,
            **{
                "Authorization": f"Bearer {acme_key[1]}",
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                **extra,
            },
        )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    rejected = [e for e in await _drain_events(acme.id) if e["type"] == "mcp_rejected"]
    assert [(e["data"]["status"], e["data"]["code"]) for e in rejected] == [(status, code)]
    assert rejected[0]["server_slug"] == "demo" and rejected[0]["key_id"] == str(acme_key[0].pk)
    await sync_to_async(connections.close_all)()


async def test_an_oversize_body_gets_413(igris_url, demo_server, acme_key):
    big = (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
        + b"x" * (4 * 1024 * 1024 + 10)
        + b'"}}}'
    )
    async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
        answer = await _raw(
            http, big, Authorization=f"Bearer {acme_key[1]}", **{"Content-Type": "application/json"}
        )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == -32600
    await sync_to_async(connections.close_all)()


async def test_an_unreachable_upstream_is_a_clear_error_and_audited(
    igris_url, acme, alice, acme_key
):
    from governance.services.servers import server_create
    from tests.conftest import free_port

    await sync_to_async(server_create)(
        org=acme,
        actor=alice,
        name="Gone",
        slug="gone",
        upstream_url=f"http://127.0.0.1:{free_port()}/mcp",
    )
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await http.post(
            "/proxy/gone/mcp",
            headers={
                "Authorization": f"Bearer {acme_key[1]}",
                "Content-Type": "application/json",
                "MCP-Protocol-Version": "2026-07-28",
                "Mcp-Method": "server/discover",
            },
            content=b'{"jsonrpc":"2.0","id":7,"method":"server/discover"}',
        )
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == -31007
    events = await _drain_events(acme.id)
    assert events[-1]["result"] == "upstream_error" and events[-1]["server_slug"] == "gone"
    await sync_to_async(connections.close_all)()
