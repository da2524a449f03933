"""Agent-facing URLs name the address igris is reached at (IGRIS_PUBLIC_URL, else the request's
host), never a port written into the code."""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django.urls import reverse

from governance.services import servers as server_services
from tests.conftest import login

HOST = "127.0.0.1:3300"
BASE = f"http://{HOST}"


@pytest.fixture
def acme_server(acme, alice):
    return server_services.server_create(
        org=acme,
        actor=alice,
        name="Acme tools",
        slug="acme-tools",
        upstream_url="https://mcp.acme.test/mcp",
    )


def _text(response) -> str:
    return response.content.decode()


@pytest.mark.django_db
def test_the_overview_s_quick_start_names_the_port_the_console_is_served_on(
    client, alice, acme, acme_server
):
    login(client, alice)
    body = _text(client.get(reverse("console:home"), headers={"host": HOST}))
    assert f"claude mcp add --transport http acme-tools {BASE}/proxy/acme-tools/mcp" in body
    assert ":3100" not in body


@pytest.mark.django_db
def test_the_server_list_and_the_server_added_message_name_the_port_the_console_is_served_on(
    client, alice, acme
):
    login(client, alice)
    added = client.post(
        reverse("console:server_create"),
        {
            "name": "GitHub tools",
            "slug": "github",
            "upstream_url": "https://mcp.github.test/mcp",
            "auth_type": "none",
            "connect_timeout_s": "5",
            "total_timeout_s": "300",
            "enabled": "on",
        },
        headers={"host": HOST},
        follow=True,
    )
    body = _text(added)
    assert f"Agents reach it at {BASE}/proxy/github/mcp" in body
    assert '<code id="proxy-' in body and f">{BASE}/proxy/github/mcp</code>" in body
    assert ":3100" not in body


@pytest.mark.django_db
def test_the_snippet_after_creating_a_key_names_the_port_the_console_is_served_on(
    client, alice, acme, acme_server
):
    login(client, alice)
    created = client.post(
        reverse("console:key_create"),
        {"name": "laptop", "scopes": ["proxy"]},
        headers={"host": HOST},
    )
    body = _text(created)
    assert created.status_code == 200 and 'data-testid="new-key"' in body
    assert f"{BASE}/proxy/acme-tools/mcp" in body
    assert ":3100" not in body


@pytest.mark.django_db
def test_an_invitation_link_names_the_address_the_invitation_was_sent_from(
    client, alice, acme, django_capture_on_commit_callbacks
):
    login(client, alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("console:member_invite"),
            {"email": "dave@acme.test", "role": "developer"},
            headers={"host": HOST},
        )
    assert len(mail.outbox) == 1
    assert f"{BASE}/invitations/" in mail.outbox[0].body


@pytest.mark.django_db
def test_igris_public_url_names_every_agent_facing_url_whatever_the_request_s_host(
    client, alice, acme, acme_server, settings
):
    settings.IGRIS_PUBLIC_URL = "https://igris.example.com"
    login(client, alice)
    body = _text(client.get(reverse("console:servers"), headers={"host": HOST}))
    assert "https://igris.example.com/proxy/acme-tools/mcp" in body
    assert BASE not in body


async def _challenge(path: str, host: bytes) -> tuple[int, str]:
    from igris_project.asgi import application

    sent: list[dict] = []
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", host),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
        ],
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 3300),
    }
    await application(scope, receive, send)
    start = sent[0]
    headers = dict(start["headers"])
    return start["status"], headers.get(b"www-authenticate", b"").decode()


async def test_the_proxy_s_401_challenge_names_the_port_igris_is_served_on():
    status, challenge = await _challenge("/proxy/acme-tools/mcp", HOST.encode())
    assert status == 401
    assert challenge == (
        f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource'
        '/proxy/acme-tools/mcp"'
    )


@pytest.mark.parametrize(
    ("host", "port", "public_url", "printed"),
    [
        ("127.0.0.1", 3300, "http://127.0.0.1:3300", "http://127.0.0.1:3300"),
        ("localhost", 8080, "http://localhost:8080", "http://localhost:8080"),
        ("::1", 3300, "http://[::1]:3300", "http://[::1]:3300"),
        # Every interface: pages follow each request's host; the banner shows loopback.
        ("0.0.0.0", 3300, "", "http://127.0.0.1:3300"),
        ("::", 3300, "", "http://127.0.0.1:3300"),
    ],
)
def test_make_run_defaults_the_public_url_to_the_address_it_serves(
    settings, host, port, public_url, printed
):
    from igris_project.management.commands.igris_run import adopt_public_url

    settings.IGRIS_PUBLIC_URL = ""
    assert adopt_public_url(host, port) == printed
    assert public_url == settings.IGRIS_PUBLIC_URL


def test_make_run_keeps_the_public_url_the_operator_set(settings):
    from igris_project.management.commands.igris_run import adopt_public_url

    settings.IGRIS_PUBLIC_URL = "https://igris.example.com"
    assert adopt_public_url("127.0.0.1", 3300) == "https://igris.example.com"
    assert settings.IGRIS_PUBLIC_URL == "https://igris.example.com"
