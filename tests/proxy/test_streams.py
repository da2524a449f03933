"""Streams through the proxy on the wire: keep-alives on silent SSE, headers, usage metering."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_proxy_e2e import _publish
from tests.support import proxy_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LEGACY = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


async def _legacy_session(http, token):
    init = await http.post(
        "/proxy/demo/mcp",
        headers={**LEGACY, "Authorization": f"Bearer {token}"},
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
    )
    assert init.status_code == 200
    session = init.headers["mcp-session-id"]
    assert session.startswith("igs_")
    headers = {
        **LEGACY,
        "Authorization": f"Bearer {token}",
        "Mcp-Session-Id": session,
        "MCP-Protocol-Version": "2025-11-25",
    }
    note = await http.post(
        "/proxy/demo/mcp",
        headers=headers,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
    )
    assert note.status_code == 202 and note.content == b""
    return headers


async def test_a_silent_sse_stream_gets_keep_alive_comments(
    igris_url, demo_server, acme, alice, acme_key
):
    await _publish(acme, alice, [], posture="allow")
    proxy = proxy_app()
    proxy.deps.keepalive_s = 0.2
    try:
        async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
            headers = await _legacy_session(http, acme_key[1])
            raw = b""
            async with http.stream(
                "POST",
                "/proxy/demo/mcp",
                headers=headers,
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "slow", "arguments": {"seconds": 1.2, "steps": 1}},
                },
            ) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                assert answer.headers["x-accel-buffering"] == "no"
                assert "no-transform" in answer.headers["cache-control"]
                async for chunk in answer.aiter_raw():
                    raw += chunk
    finally:
        proxy.deps.keepalive_s = float(settings.IGRIS_SSE_KEEPALIVE_S)
    assert raw.count(b": keep-alive") >= 2
    final = [json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:")]
    assert final[-1]["id"] == 2 and not final[-1]["result"].get("isError")
    await sync_to_async(connections.close_all)()


async def test_a_deleted_session_is_gone_and_a_foreign_key_cannot_use_it(
    igris_url, demo_server, acme, alice, acme_key, globex_key
):
    await _publish(acme, alice, [], posture="allow")
    async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
        headers = await _legacy_session(http, acme_key[1])
        stolen = {**headers, "Authorization": f"Bearer {globex_key[1]}"}
        foreign = await http.post(
            "/proxy/demo/mcp",
            headers=stolen,
            json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
        )
        assert foreign.status_code == 404  # globex has no server "demo" and cannot see the session
        listed = await http.post(
            "/proxy/demo/mcp",
            headers=headers,
            json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
        )
        assert listed.status_code == 200
        gone = await http.delete("/proxy/demo/mcp", headers=headers)
        assert gone.status_code == 200
        after = await http.post(
            "/proxy/demo/mcp",
            headers=headers,
            json={"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
        )
        assert after.status_code == 404 and after.json()["error"]["message"] == "Session not found."
    await sync_to_async(connections.close_all)()


async def test_tool_calls_are_metered_per_organisation_and_month(
    igris_url, demo_server, acme, alice, acme_key
):
    from governance.runtime.hotstate.redis import RedisHotState
    from proxy.usage import usage_key

    await _publish(
        acme,
        alice,
        [{"id": "no-add", "action": "deny", "match": {"tools": ["add"]}}],
        posture="allow",
    )
    async with httpx.AsyncClient(base_url=igris_url) as http:
        for i in range(3):
            assert (
                await _post_call(http, acme_key[1], "echo", {"text": str(i)}, id=i)
            ).status_code == 200
        assert (
            await _post_call(http, acme_key[1], "add", {"a": 1, "b": 1}, id=9)
        ).status_code == 200
    hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
    try:
        for _ in range(40):
            count = await hs.get_counter(usage_key(str(acme.id), datetime.now(UTC)))
            if count >= 4:
                break
            await asyncio.sleep(0.1)
    finally:
        await hs.close()
    assert count == 4  # denied calls count too: they were made and governed
    await sync_to_async(connections.close_all)()


async def test_a_client_that_leaves_cancels_the_upstream_request(igris_url, acme, alice, acme_key):
    """Modern era: closing the connection is the cancel, and it must reach the upstream."""
    from governance.services.servers import server_create
    from tests.proxy.test_proxy_e2e import _drain_events
    from tests.support import serving

    upstream_saw_disconnect = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def hanging_upstream(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        # Never answers; waits for the proxy to hang up.
        while (await receive())["type"] != "http.disconnect":
            pass
        loop.call_soon_threadsafe(upstream_saw_disconnect.set)

    await _publish(acme, alice, [], posture="allow")
    with serving(hanging_upstream, lifespan="off") as port:
        await sync_to_async(server_create)(
            org=acme,
            actor=alice,
            name="Hang",
            slug="hang",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
        )
        async with httpx.AsyncClient(
            base_url=igris_url, timeout=httpx.Timeout(5, read=0.5)
        ) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post(
                    "/proxy/hang/mcp",
                    content=json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "tools/call",
                            "params": {"name": "slow", "arguments": {}},
                        }
                    ),
                    headers={
                        "Authorization": f"Bearer {acme_key[1]}",
                        "Content-Type": "application/json",
                        "MCP-Protocol-Version": "2026-07-28",
                        "Mcp-Method": "tools/call",
                        "Mcp-Name": "slow",
                    },
                )
        await asyncio.wait_for(upstream_saw_disconnect.wait(), timeout=10)
    for _ in range(20):
        events = [e for e in await _drain_events(acme.id) if e.get("server_slug") == "hang"]
        if events:
            break
        await asyncio.sleep(0.1)
    assert events[-1]["result"] == "cancelled"
    assert events[-1]["data"]["reason"] == "client disconnected"
    await sync_to_async(connections.close_all)()
