"""Loop-bound clients belong to the loop that uses them.

redis.asyncio connections and aiohttp sessions fail with "attached to a different loop" when one
loop's client is used from another. A process serving igris from two loops at once (here: a
uvicorn server in a thread, and the test's own loop calling the same ASGI application) must give
each loop its own proxy, upstream session and hot-state client, and neither loop may see a 500.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

import governance.runtime.hotstate
from tests.proxy.test_kill_switch import MODERN, _call, _post_call
from tests.proxy.test_proxy_e2e import _publish
from tests.support import asgi_call

pytestmark = pytest.mark.django_db(transaction=True)


def _dispatcher() -> Any:
    from igris_project.asgi import application

    app: Any = application
    while not hasattr(app, "proxies"):
        app = app.app
    return app


async def _call_in_this_loop(token: str, n: int) -> tuple[int, dict[str, Any]]:
    from igris_project.asgi import application

    status, _headers, body = await asgi_call(
        application,
        path="/proxy/demo/mcp",
        headers=[
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"mcp-method", b"tools/call"),
            (b"mcp-name", b"echo"),
            *((k.lower().encode(), v.encode()) for k, v in MODERN.items()),
        ],
        body=_call("echo", {"text": f"loop-b-{n}"}, id=n).encode(),
    )
    return status, json.loads(body)


async def test_two_event_loops_serve_one_application_side_by_side(
    igris_url, demo_server, acme, alice, acme_key
):
    await _publish(acme, alice, [], posture="allow")
    token = acme_key[1]
    async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
        for n in range(1, 7):
            # Interleaved: the server thread's loop, then this test's loop, each in turn.
            over_socket = await _post_call(http, token, "echo", {"text": f"loop-a-{n}"}, id=n)
            assert over_socket.status_code == 200, over_socket.text
            assert f"loop-a-{n}" in over_socket.text
            status, answer = await _call_in_this_loop(token, n)
            assert status == 200, answer
            assert answer["result"]["content"][0]["text"].endswith(f"loop-b-{n}")

    proxies = _dispatcher().proxies()
    assert len(proxies) == 2  # one per loop, not one shared
    first, second = proxies
    assert first.upstream is not second.upstream
    assert first.sessions is not second.sessions
    await governance.runtime.hotstate.close_hotstate()


async def test_each_loop_gets_its_own_redis_hot_state_and_closing_one_leaves_the_other():
    here = governance.runtime.hotstate.get_hotstate()
    assert governance.runtime.hotstate.get_hotstate() is here
    there: list[Any] = []

    def other_loop() -> None:
        async def run() -> None:
            instance = governance.runtime.hotstate.get_hotstate()
            there.append(instance)
            await instance.set_flag("loops:other", "1")
            await governance.runtime.hotstate.close_hotstate()

        asyncio.run(run())

    await asyncio.to_thread(other_loop)

    assert there and there[0] is not here
    # The other loop closed its own client; this loop's still works.
    assert await here.get_flags(["loops:other"]) == ["1"]
    await governance.runtime.hotstate.close_hotstate()
    assert governance.runtime.hotstate.get_hotstate() is not here
    await governance.runtime.hotstate.close_hotstate()


def test_synchronous_code_is_told_to_use_the_sync_bridge_with_redis():
    with pytest.raises(RuntimeError, match="governance.runtime.hotstate.sync"):
        governance.runtime.hotstate.get_hotstate()


async def test_an_internal_failure_is_a_json_rpc_error_never_a_500(
    igris_url, demo_server, acme, alice, acme_key, monkeypatch
):
    await _publish(acme, alice, [], posture="allow")
    from proxy.runtime import Runtime

    async def broken(self, org_id, slug):
        raise RuntimeError("a client broke under the proxy")

    monkeypatch.setattr(Runtime, "server", broken)
    async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
        answer = await _post_call(http, acme_key[1], "echo", {"text": "hi"})

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert error["code"] == -32603
    assert error["data"]["reason"] == "internal_error"
    assert error["data"]["reference"] in error["message"]
    assert "Traceback" not in answer.text and "a client broke" not in answer.text
