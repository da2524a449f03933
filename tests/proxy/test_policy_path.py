"""The proxy decides through the one compiled-policy class (governance.policy.PolicySnapshot):
its cross-organisation guard and its rule for nameless list entries hold on the proxy's path."""

from __future__ import annotations

import json

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_proxy_e2e import _drain_events, _publish
from tests.support import serving

pytestmark = pytest.mark.django_db(transaction=True)

LIST_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/list",
}


async def test_a_snapshot_handed_another_organisations_call_denies_through_the_proxy(
    igris_url, demo_server, acme, alice, acme_key, globex, charlie, globex_key, monkeypatch
):
    """If the proxy ever looked up the wrong organisation's policy, the snapshot refuses to
    apply it: the call is denied and the audit record says why."""
    from governance.policy_store import snapshot_for_org
    from governance.services.servers import server_create
    from proxy.runtime import Runtime

    await _publish(acme, alice, [], posture="allow")
    await sync_to_async(server_create)(
        org=globex,
        actor=charlie,
        name="Demo tools",
        slug="demo",
        upstream_url=demo_server.upstream_url,
    )
    acme_snapshot = await sync_to_async(snapshot_for_org)(str(acme.id))

    async def always_acme(self, org_id):
        return acme_snapshot

    monkeypatch.setattr(Runtime, "snapshot", always_acme)
    async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
        answer = await _post_call(http, globex_key[1], "echo", {"text": "hi"})

    result = answer.json()["result"]
    assert result["isError"] is True and "policy unavailable" in result["content"][0]["text"]
    denial = next(e for e in await _drain_events(globex.id) if e["type"] == "tool_call")
    assert denial["decision"] == "deny"
    assert f"asked about organisation {globex.id}" in denial["reason"]
    await sync_to_async(connections.close_all)()


def _upstream(status: int, body: bytes = b""):
    """A bare HTTP upstream that answers every request with `status` and `body` (JSON)."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/json")] if body else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _listing_upstream(tools: list[dict]):
    return _upstream(
        200, json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}}).encode()
    )


async def test_a_listed_tool_without_a_name_is_dropped_by_the_proxy(
    igris_url, acme, alice, acme_key
):
    from governance.services.servers import server_create

    await _publish(acme, alice, [], posture="allow")
    tools = [
        {"name": "echo", "inputSchema": {"type": "object"}},
        {"description": "no name at all", "inputSchema": {"type": "object"}},
        {"name": 7, "inputSchema": {"type": "object"}},
    ]
    with serving(_listing_upstream(tools)) as port:
        await sync_to_async(server_create)(
            org=acme,
            actor=alice,
            name="Lister",
            slug="lister",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
        )
        async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
            answer = await http.post(
                "/proxy/lister/mcp",
                headers={**LIST_HEADERS, "Authorization": f"Bearer {acme_key[1]}"},
                content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
            )
    assert answer.status_code == 200, answer.text
    assert [t.get("name") for t in answer.json()["result"]["tools"]] == ["echo"]
    await sync_to_async(connections.close_all)()


@pytest.mark.parametrize(("upstream", "answered", "code"), [(400, 400, -32600), (503, 502, -31009)])
async def test_a_notification_the_upstream_refuses_gets_a_json_rpc_error_not_an_empty_body(
    igris_url, acme, alice, acme_key, upstream, answered, code
):
    """Found by the proxy fuzz test: the upstream's refusal of a notification was relayed as its
    bare status with an empty body."""
    from governance.services.servers import server_create

    await _publish(acme, alice, [], posture="allow")
    with serving(_upstream(upstream)) as port:
        await sync_to_async(server_create)(
            org=acme,
            actor=alice,
            name="Refuser",
            slug="refuser",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
        )
        async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
            answer = await http.post(
                "/proxy/refuser/mcp",
                headers={
                    **LIST_HEADERS,
                    "Mcp-Method": "notifications/cancelled",
                    "Authorization": f"Bearer {acme_key[1]}",
                },
                content=b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}',
            )
    assert answer.status_code == answered
    error = answer.json()["error"]
    assert error["code"] == code and f"HTTP {upstream}" in error["message"]
    assert error["data"] == {"upstream_status": upstream}
    await sync_to_async(connections.close_all)()
