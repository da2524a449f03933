"""The console session cookie drives the proxy only from the console's own origin."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import Client

from tests.proxy.test_kill_switch import _call
from tests.proxy.test_proxy_e2e import _publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _session_cookie(user, org) -> str:
    from governance.middleware import SESSION_ORG_KEY

    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    session = client.session
    session[SESSION_ORG_KEY] = str(org.id)
    session.save()
    return session.session_key


@pytest.mark.parametrize(
    ("origin", "status"),
    [("same", 200), ("https://evil.example", 403), (None, 401)],
)
async def test_the_session_cookie_needs_a_same_origin_header(
    igris_url, demo_server, acme, alice, origin, status
):
    await _publish(acme, alice, [], posture="allow")
    cookie = await sync_to_async(_session_cookie)(alice, acme)
    headers = {
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
        "Cookie": f"igris.session_token={cookie}",
    }
    if origin is not None:
        headers["Origin"] = igris_url if origin == "same" else origin
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await http.post(
            "/proxy/demo/mcp", content=_call("echo", {"text": "from the console"}), headers=headers
        )
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json()["result"]["content"][0]["text"] == "from the console"
    await sync_to_async(connections.close_all)()


async def test_a_member_whose_role_cannot_use_the_playground_is_refused(
    igris_url, demo_server, acme, alice
):
    from governance.models import Membership, User

    await _publish(acme, alice, [], posture="allow")
    auditor = await sync_to_async(User.objects.create_user)(
        email="audrey@acme.test", password="x" * 12
    )
    await sync_to_async(Membership.objects.create)(org=acme, user=auditor, role="auditor")
    cookie = await sync_to_async(_session_cookie)(auditor, acme)
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await http.post(
            "/proxy/demo/mcp",
            content=_call("echo", {"text": "x"}),
            headers={
                "Content-Type": "application/json",
                "MCP-Protocol-Version": "2026-07-28",
                "Mcp-Method": "tools/call",
                "Mcp-Name": "echo",
                "Cookie": f"igris.session_token={cookie}",
                "Origin": igris_url,
            },
        )
    assert answer.status_code == 401
    await sync_to_async(connections.close_all)()
