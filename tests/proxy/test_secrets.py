"""Secrets never leak: masked in audit arguments, absent from logs, answers and pages."""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import sync_to_async

import governance.runtime.hotstate
from governance import keys
from governance.events import AUDIT_STREAM
from igris_project.demo.upstream import build_demo_app
from igris_project.logs import JsonFormatter
from proxy.app import ProxyApp
from tests.conftest import login
from tests.support import asgi_call, serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

UPSTREAM_CREDENTIAL = "upstream-cred-Zq8Xw3Lp9Tn2"
PASSWORD = "hunter2-Pw-7f3k9"
TOKEN = "tok-Vb6Nm1Qa8Rt4"
FOREIGN_KEY = "ig_GRKdJ6HX1CdX_" + "Ab9" * 12
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLXZhbHVl"


def rendered_logs(caplog) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


async def audit_events(org_id) -> list[dict]:
    hs = governance.runtime.hotstate.get_hotstate()
    entries = await hs.stream_range(AUDIT_STREAM, "-", "+")
    events = [json.loads(fields["event"]) for _, fields in entries]
    return [e for e in events if e["org_id"] == str(org_id)]


@pytest.fixture
async def proxied(acme, alice):
    from governance.services.servers import server_create

    with serving(build_demo_app()) as port:
        await sync_to_async(server_create)(
            org=acme,
            actor=alice,
            name="Demo tools",
            slug="demo",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
            credential=UPSTREAM_CREDENTIAL,
        )
        keys.reset()
        app = ProxyApp()
        await app.startup()
        try:
            yield app
        finally:
            await app.shutdown()
            await governance.runtime.hotstate.close_hotstate()
            keys.reset()


async def rpc(app, token: str, body: dict, **headers: str):
    sent = [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")]
    sent += [(b"accept", b"application/json, text/event-stream")]
    sent += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return await asgi_call(
        app, path="/proxy/demo/mcp", headers=sent, body=json.dumps(body).encode()
    )


async def test_secrets_in_arguments_are_masked_in_the_audit_and_absent_from_logs(
    proxied, acme, acme_key, caplog
):
    caplog.set_level(logging.DEBUG)
    token = acme_key[1]
    status, headers, _ = await rpc(
        proxied,
        token,
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "secrets-test", "version": "1"}}},
    )  # fmt: skip
    assert status == 200
    session = headers["mcp-session-id"]
    arguments = {
        "text": "hello",
        "password": PASSWORD,
        "api_key": token,
        "headers": {"Authorization": f"Bearer {BEARER}", "X-Api-Token": TOKEN},
        "notes": [FOREIGN_KEY, BEARER],
    }
    status, _, answer = await rpc(
        proxied,
        token,
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "echo", "arguments": arguments}},
        mcp_session_id=session, mcp_protocol_version="2025-06-18",
    )  # fmt: skip
    assert status == 200, answer
    events = await audit_events(acme.id)
    call = next(e for e in events if e["type"] == "tool_call")
    stored = call["data"]["arguments"]
    assert stored["text"] == "hello"
    assert stored["password"] == "***" and stored["api_key"] == "***"
    assert stored["headers"] == {"Authorization": "***", "X-Api-Token": "***"}
    assert stored["notes"] == ["***", "***"]
    everything = json.dumps(events) + rendered_logs(caplog)
    for secret in (PASSWORD, token, TOKEN, FOREIGN_KEY, BEARER, UPSTREAM_CREDENTIAL):
        assert secret not in everything


async def test_an_invalid_key_is_never_echoed_or_logged(proxied, acme_key, caplog):
    caplog.set_level(logging.DEBUG)
    prefix = acme_key[1].split("_")[1]
    guess = f"ig_{prefix}_{'Wr0ng' * 8}"
    for token in (guess, FOREIGN_KEY, "not-a-key-" + TOKEN):
        status, _, answer = await rpc(proxied, token, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert status == 401
        assert token.encode() not in answer and b"Wr0ng" not in answer
    for _ in range(25):  # over the budget: the throttle's log line names the address only
        await rpc(proxied, guess, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    logs = rendered_logs(caplog)
    assert "Wr0ng" not in logs and TOKEN not in logs and FOREIGN_KEY not in logs
    assert "too many failed API key authentications" in logs


def test_the_upstream_credential_never_appears_in_answers_or_pages(
    client, acme, alice, acme_key, caplog
):
    from governance.models import User
    from governance.services.servers import server_create

    caplog.set_level(logging.DEBUG)
    server = server_create(
        org=acme,
        actor=alice,
        name="Vault",
        slug="vault",
        upstream_url="http://127.0.0.1:9/mcp",
        credential=UPSTREAM_CREDENTIAL,
    )
    auth = {"Authorization": f"Bearer {acme_key[1]}"}
    pages = [
        client.get("/api/v1/servers/", headers=auth),
        client.get(f"/api/v1/servers/{server.id}/", headers=auth),
        client.get("/api/v1/audit-events/", headers=auth),
    ]
    assert pages[1].json()["has_credential"] is True
    login(client, alice)
    pages += [client.get("/servers/"), client.get(f"/servers/{server.id}/edit/")]
    admin = User.objects.create_superuser(email="root@igris.test", password="x" * 12)
    login(client, admin)
    pages.append(client.get(f"/admin/governance/mcpserver/{server.id}/change/"))
    for page in pages:
        assert page.status_code == 200, page.request["PATH_INFO"]
        assert UPSTREAM_CREDENTIAL not in page.content.decode()
    assert UPSTREAM_CREDENTIAL not in rendered_logs(caplog)
