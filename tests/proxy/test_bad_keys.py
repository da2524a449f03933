"""Brute force on the proxy: failed API keys from one address are throttled (BadKeyGuard).

The proxy is called in process (tests.support.asgi_call) with the client address in the ASGI
scope; both hot-state backends hold the shared budget.
"""

from __future__ import annotations

import json

import pytest

import governance.runtime.hotstate
from governance import keys
from governance.runtime.hotstate import MemoryHotState, RedisHotState
from proxy import jsonrpc
from proxy.app import ProxyApp
from tests.support import asgi_call

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 3
WRONG = "ig_aaaaaaaaaaaa_" + "s" * 32


@pytest.fixture(params=["memory", "redis"])
async def proxy(request, settings):
    """A ProxyApp on this test's loop, with the chosen hot-state backend and a budget of 3."""
    settings.IGRIS_BAD_KEY_RATE_PER_MIN = LIMIT
    hs = (
        MemoryHotState(settings.IGRIS_HOTSTATE_PREFIX)
        if request.param == "memory"
        else RedisHotState(settings.REDIS_URL, settings.IGRIS_HOTSTATE_PREFIX)
    )
    governance.runtime.hotstate.install_hotstate(hs)
    keys.reset()
    app = ProxyApp()
    yield app
    governance.runtime.hotstate.reset_hotstate()
    keys.reset()
    await hs.close()


async def post(app, token: str, address: str = "203.0.113.7", **headers: str):
    sent = [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]
    sent += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    status, answer_headers, body = await asgi_call(
        app,
        path="/proxy/nowhere/mcp",
        headers=sent,
        body=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        client=(address, 40000),
    )
    return status, answer_headers, json.loads(body)


async def test_an_address_over_its_budget_of_failed_keys_gets_429(proxy, acme_key):
    for _ in range(LIMIT):
        status, _, body = await post(proxy, WRONG)
        assert status == 401 and body["error"]["code"] == jsonrpc.UNAUTHORIZED
    status, headers, body = await post(proxy, WRONG)
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == jsonrpc.RATE_LIMITED
    assert body["error"]["data"] == {"reason": "throttled"}
    assert "failed API key attempts" in body["error"]["message"]
    # Only failures are throttled: a valid key from the same address (another client behind
    # the same NAT) still gets through while the block lasts, and wrong keys are still refused.
    status, _, body = await post(proxy, acme_key[1])
    assert status == 404 and "nowhere" in body["error"]["message"]
    status, _, _ = await post(proxy, WRONG)
    assert status == 429


async def test_other_addresses_and_valid_keys_are_not_throttled(proxy, acme_key):
    for _ in range(LIMIT + 1):
        await post(proxy, WRONG, address="203.0.113.7")
    status, _, body = await post(proxy, WRONG, address="198.51.100.9")
    assert status == 401
    # A valid key from another address passes authentication (the server does not exist).
    status, _, body = await post(proxy, acme_key[1], address="198.51.100.9")
    assert status == 404 and "nowhere" in body["error"]["message"]


async def test_valid_keys_spend_nothing_of_the_budget(proxy, acme_key):
    for _ in range(LIMIT * 3):
        status, _, _ = await post(proxy, acme_key[1])
        assert status == 404
    assert not [k for k in await _budget_keys(proxy)]
    for _ in range(LIMIT):
        status, _, _ = await post(proxy, WRONG)
        assert status == 401
    assert await _budget_keys(proxy)


async def _budget_keys(app) -> list[str]:
    hs = app.hotstate
    if isinstance(hs, MemoryHotState):
        return [k for k in hs.store.live_keys() if keys.BAD_KEY_RATE_KEY in k]
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return [k.decode() for k in client.scan_iter(match=f"*{keys.BAD_KEY_RATE_KEY}*")]
    finally:
        client.close()


async def test_the_address_is_the_scope_client_whatever_x_forwarded_for_says(proxy):
    # igris_project.forwarded sets scope["client"]; a client rotating the header gains nothing.
    for n in range(LIMIT):
        await post(proxy, WRONG, x_forwarded_for=f"10.0.0.{n}")
    status, _, _ = await post(proxy, WRONG, x_forwarded_for="10.0.0.99")
    assert status == 429


async def test_the_budget_is_shared_by_every_process(settings):
    """Two guards (two processes) on one Redis: the second refuses at its first failure."""
    hs = RedisHotState(settings.REDIS_URL, settings.IGRIS_HOTSTATE_PREFIX)
    try:
        first, second = (keys.BadKeyGuard(limit_per_min=LIMIT) for _ in range(2))
        assert [await first.failed(hs, "192.0.2.1") for _ in range(LIMIT)] == [None] * LIMIT
        wait = await second.failed(hs, "192.0.2.1")
        assert wait is not None and wait > 0
        assert second.blocked_for("192.0.2.1") is not None
        assert first.blocked_for("192.0.2.1") is None  # learns at its own next failure
        assert await first.failed(hs, "192.0.2.1") is not None
    finally:
        await hs.close()
