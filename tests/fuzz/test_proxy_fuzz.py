"""The whole proxy ASGI app on fuzzed bodies and headers, with a real key and a real upstream.

Every answer is 2xx or 4xx (never 5xx: igris, the upstream and the state store are all up), and
every non-2xx body is a JSON-RPC error naming the problem.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import governance.runtime.hotstate
from governance import keys
from igris_project.demo.upstream import build_demo_app
from proxy.app import ProxyApp
from tests.fuzz.profiles import scaled
from tests.fuzz.test_jsonrpc_fuzz import bodies, messages
from tests.support import asgi_call, serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def running(acme, alice, acme_key) -> Iterator[tuple[asyncio.AbstractEventLoop, ProxyApp, str]]:
    """A started ProxyApp on a loop of its own, in front of the demo upstream."""
    from governance.services.servers import server_create

    with serving(build_demo_app()) as port:
        server_create(
            org=acme,
            actor=alice,
            name="Demo tools",
            slug="demo",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
        )
        loop = asyncio.new_event_loop()
        keys.reset()
        app = ProxyApp()
        loop.run_until_complete(app.startup())
        try:
            yield loop, app, acme_key[1]
        finally:
            loop.run_until_complete(app.shutdown())
            loop.run_until_complete(governance.runtime.hotstate.close_hotstate())
            loop.close()
            keys.reset()


header_values = st.one_of(
    st.sampled_from(
        ["2026-07-28", "2025-06-18", "2025-03-26", "tools/call", "tools/list", "echo", "add",
         "initialize", "=?base64?ZWNobw==?=", "=?base64?!!?=", "igm_x", ""]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
)  # fmt: skip
fuzzed_headers = st.dictionaries(
    st.sampled_from(
        ["mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id", "accept",
         "last-event-id", "origin", "cookie"]
    ),
    header_values,
    max_size=4,
)  # fmt: skip
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", "APPLICATION/JSON"]
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    method = draw(st.sampled_from(["POST", "POST", "POST", "POST", "GET", "DELETE", "PUT"]))
    headers = draw(fuzzed_headers)
    headers["content-type"] = draw(content_types)
    body = draw(st.one_of(bodies(), st.builds(lambda m: json.dumps(m).encode(), messages())))
    return method, headers, body


def check_answer(status: int, headers: dict[str, str], body: bytes) -> None:
    assert 200 <= status < 500 and not 300 <= status < 400, (status, body[:300])
    if status >= 300:
        answer = json.loads(body)
        assert answer["jsonrpc"] == "2.0"
        assert isinstance(answer["error"]["code"], int) and answer["error"]["message"]
    elif body and headers.get("content-type", "").startswith("application/json"):
        answer = json.loads(body)
        assert answer["jsonrpc"] == "2.0" and ("result" in answer or "error" in answer)


@scaled(60)
@given(request=requests())
@example(request=("POST", {"content-type": "application/json"}, b"[" * 100_000))
@example(
    request=(
        "POST",
        {"content-type": "application/json"},
        b'{"jsonrpc":"2.0","id":"\\udfff","method":"tools/call"}',
    )
)
@example(
    request=(
        "POST",
        {
            "content-type": "application/json",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": "echo",
        },
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":[]}}',
    )
)
def test_the_proxy_answers_any_request_with_a_json_rpc_answer_never_a_5xx(
    running: tuple[asyncio.AbstractEventLoop, ProxyApp, str],
    request: tuple[str, dict[str, str], bytes],
) -> None:
    loop, app, token = running
    method, headers, body = request
    sent: list[tuple[bytes, bytes]] = [(b"authorization", f"Bearer {token}".encode())]
    sent += [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    status, answer_headers, answer = loop.run_until_complete(
        asyncio.wait_for(
            asgi_call(app, path="/proxy/demo/mcp", method=method, headers=sent, body=body), 30
        )
    )
    check_answer(status, answer_headers, answer)


@scaled(30)
@given(authorization=st.one_of(st.text(max_size=80), st.binary(max_size=80)))
def test_a_fuzzed_authorization_header_gets_401_and_never_echoes_the_key(
    running: tuple[asyncio.AbstractEventLoop, ProxyApp, str], authorization: Any
) -> None:
    loop, app, _ = running
    value = authorization if isinstance(authorization, bytes) else authorization.encode()
    keys.reset()  # a fresh budget: this test is about the 401, not the throttle
    status, _, answer = loop.run_until_complete(
        asgi_call(
            app,
            path="/proxy/demo/mcp",
            headers=[(b"authorization", value), (b"content-type", b"application/json")],
            body=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
            client=(f"192.0.2.{len(value) % 250}", 1),
        )
    )
    assert status in (401, 429)
    check_answer(status, {}, answer)
    secret = value.split(b" ")[-1]
    if len(secret) >= 8:
        assert secret not in answer
