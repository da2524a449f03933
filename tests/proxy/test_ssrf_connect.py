"""The SSRF guard at connect time, in the one upstream seam: a name that resolves to a refused
address when igris connects (not when the server was saved) is refused, and nothing is sent."""

from __future__ import annotations

import socket

import httpx
import pytest
from aiohttp.abc import AbstractResolver

from governance.ssrf import AddressPolicy, parse_networks
from igris_project.demo.upstream import build_demo_app
from proxy import jsonrpc
from proxy.upstream import Upstream, UpstreamError
from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_proxy_e2e import _publish
from tests.support import serving

INIT = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


class Rebinding(AbstractResolver):
    """A name server whose answer for one host changes between lookups, as in DNS rebinding."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.lookups = 0

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups += 1
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def _ping(upstream: Upstream, url: str) -> int:
    response = await upstream.request(
        "POST",
        url,
        headers={"content-type": "application/json", "accept": "application/json"},
        body=INIT,
        connect_timeout_s=5,
        total_timeout_s=10,
    )
    try:
        return response.status
    finally:
        response.close()


async def test_a_name_that_resolves_to_a_metadata_address_at_connect_time_is_refused():
    with serving(build_demo_app()) as port:
        names = Rebinding("127.0.0.1")
        upstream = Upstream(policy=AddressPolicy(), resolver=names)
        try:
            # Saved while it resolved to loopback, and it works...
            assert await _ping(upstream, f"http://tools.internal.test:{port}/mcp") < 500
            # ...then the name moves to the cloud metadata service: refused before connecting.
            names.address = "169.254.169.254"
            fresh = Upstream(policy=AddressPolicy(), resolver=names)
            try:
                with pytest.raises(UpstreamError) as exc:
                    await _ping(fresh, f"http://tools.internal.test:{port}/mcp")
            finally:
                await fresh.close()
        finally:
            await upstream.close()
    assert exc.value.code == jsonrpc.UPSTREAM_UNREACHABLE
    assert "tools.internal.test resolves to 169.254.169.254" in exc.value.message
    assert "link-local" in exc.value.message


@pytest.mark.parametrize(
    ("allowed", "refused"), [("private", False), ("loopback", False), ("none", True)]
)
async def test_loopback_upstreams_follow_the_allowed_networks_setting(allowed, refused):
    policy = AddressPolicy(allowed_networks=parse_networks(allowed))
    with serving(build_demo_app()) as port:
        for url in (f"http://127.0.0.1:{port}/mcp", f"http://loopback.test:{port}/mcp"):
            upstream = Upstream(policy=policy, resolver=Rebinding("127.0.0.1"))
            try:
                if refused:
                    with pytest.raises(UpstreamError) as exc:
                        await _ping(upstream, url)
                    assert "outside IGRIS_UPSTREAM_ALLOWED_NETWORKS" in exc.value.message
                else:
                    assert await _ping(upstream, url) < 500
            finally:
                await upstream.close()


@pytest.mark.django_db(transaction=True)
async def test_a_shared_install_refuses_a_loopback_upstream_through_the_proxy(
    demo_server, acme, alice, acme_key, settings
):
    """Saved under the self-hosted default, then served by an install that allows no private
    networks: the call is refused with a JSON-RPC error naming the setting."""
    from igris_project.asgi import application

    await _publish(acme, alice, [], posture="allow")
    settings.IGRIS_UPSTREAM_ALLOWED_NETWORKS = "none"
    with serving(application) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            answer = await _post_call(http, acme_key[1], "echo", {"text": "hi"})
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == jsonrpc.UPSTREAM_UNREACHABLE
    assert "outside IGRIS_UPSTREAM_ALLOWED_NETWORKS" in error["message"]
