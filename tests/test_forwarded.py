"""X-Forwarded-* are believed only from configured proxies (igris_project/forwarded.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from igris_project.forwarded import (
    AllowedHosts,
    ForwardedHeaders,
    TrustedProxyError,
    parse_trusted,
)

ROOT = Path(__file__).resolve().parents[1]


async def _seen(
    middleware_trusted: str, *, peer: str, headers: list[tuple[bytes, bytes]], kind: str = "http"
) -> dict:
    seen: dict = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {
        "type": kind,
        "client": (peer, 5555),
        "scheme": "http" if kind == "http" else "ws",
        "headers": headers,
        "path": "/",
    }
    await ForwardedHeaders(app, parse_trusted(middleware_trusted))(scope, None, None)
    return seen


SPOOF = [
    (b"x-forwarded-for", b"6.6.6.6"),
    (b"x-forwarded-proto", b"https"),
    (b"x-forwarded-host", b"evil.example"),
    (b"forwarded", b"for=6.6.6.6;proto=https"),
    (b"host", b"igris.test"),
]


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8", "10.1.2.3"])
async def test_a_client_that_is_not_a_trusted_proxy_cannot_claim_another_address(trusted):
    seen = await _seen(trusted, peer="203.0.113.9", headers=SPOOF)
    assert seen["client"] == ("203.0.113.9", 5555)
    assert seen["scheme"] == "http"
    assert seen["headers"] == [(b"host", b"igris.test")]  # Django never sees the forged ones


async def test_behind_a_trusted_proxy_the_client_is_the_first_untrusted_hop_from_the_right():
    headers = [
        # client-written garbage and a spoofed entry, then what our two proxies appended
        (b"x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.0.0.5"),
        (b"x-forwarded-proto", b"https"),
    ]
    seen = await _seen("10.0.0.0/8", peer="10.0.0.9", headers=headers)
    assert seen["client"] == ("198.51.100.7", 0)
    assert seen["scheme"] == "https"
    assert dict(seen["headers"])[b"x-forwarded-proto"] == b"https"  # kept for Django


async def test_garbage_in_the_chain_stops_the_walk_at_the_last_believable_hop():
    headers = [(b"x-forwarded-for", b"not-an-ip, 198.51.100.7")]
    seen = await _seen("*", peer="10.0.0.9", headers=headers)
    assert seen["client"] == ("198.51.100.7", 0)
    seen = await _seen("*", peer="10.0.0.9", headers=[(b"x-forwarded-for", b"<script>")])
    assert seen["client"] == ("10.0.0.9", 5555)


async def test_websockets_follow_the_forwarded_scheme_too():
    seen = await _seen(
        "127.0.0.1",
        peer="127.0.0.1",
        kind="websocket",
        headers=[(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"[2001:db8::1]:443")],
    )
    assert seen["scheme"] == "wss"
    assert seen["client"] == ("2001:db8::1", 0)


def test_trusted_proxies_are_addresses_or_blocks():
    assert parse_trusted("") == []
    assert parse_trusted("*") is None
    assert [str(n) for n in parse_trusted("10.0.0.0/8, 192.0.2.1,::1")] == [
        "10.0.0.0/8",
        "192.0.2.1/32",
        "::1/128",
    ]
    with pytest.raises(TrustedProxyError, match="'nope'"):
        parse_trusted("10.0.0.0/8,nope")


def test_a_bad_setting_stops_igris_from_starting():
    env = {**os.environ, "IGRIS_TRUSTED_PROXIES": "10.0.0.0/33"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "IGRIS_TRUSTED_PROXIES: '10.0.0.0/33'" in result.stderr


def test_the_served_application_is_wrapped():
    from igris_project.asgi import application

    assert isinstance(application, ForwardedHeaders)


async def _get(app, path: str, headers: list[tuple[bytes, bytes]], peer: str = "127.0.0.1"):
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": (peer, 4000),
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 3100),
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


async def test_a_forged_host_is_refused_before_it_reaches_any_url_the_proxy_builds(settings):
    from igris_project.asgi import application

    settings.IGRIS_PUBLIC_URL = ""
    status, body = await _get(
        application, "/.well-known/oauth-protected-resource", [(b"host", b"evil.example")]
    )
    assert (status, body["error"]) == (400, "bad_host")
    status, body = await _get(application, "/proxy/demo/mcp", [(b"host", b"evil.example")])
    assert status == 400
    # A platform's health check addresses the machine by its private address.
    status, body = await _get(application, "/healthz", [(b"host", b"172.19.4.2:3100")])
    assert status in (200, 503) and "status" in body
    status, body = await _get(
        application, "/.well-known/oauth-protected-resource", [(b"host", b"127.0.0.1:3100")]
    )
    assert status == 200 and body["resource"] == "http://127.0.0.1:3100/proxy"


async def test_a_trusted_proxy_s_forwarded_host_and_scheme_make_the_public_url(settings):
    from proxy.wellknown import protected_resource_metadata

    settings.IGRIS_PUBLIC_URL = ""
    app = ForwardedHeaders(
        AllowedHosts(protected_resource_metadata, ["igris.example"]), parse_trusted("10.0.0.0/8")
    )
    forwarded = [
        (b"host", b"10.0.0.2:3100"),
        (b"x-forwarded-host", b"igris.example"),
        (b"x-forwarded-proto", b"https"),
    ]
    status, body = await _get(
        app, "/.well-known/oauth-protected-resource/proxy/demo/mcp", forwarded, peer="10.0.0.7"
    )
    assert status == 200
    assert body["resource"] == "https://igris.example/proxy/demo/mcp"
    # The same headers from a peer that is not a trusted proxy: dropped, and its Host refused.
    status, body = await _get(
        app, "/.well-known/oauth-protected-resource", forwarded, peer="198.51.100.1"
    )
    assert status == 400
