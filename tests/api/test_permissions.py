"""Who may do what through the API: the role table for every operation (console sessions and
keys alike), key scopes per method, and authentication failures with their reason."""

from __future__ import annotations

import pytest

from governance.permissions import role_can
from tests.api.conftest import Api, make_key, outbox_count, send, session_api
from tests.api.endpoints import ENDPOINTS, ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast(alice, bob, dave, erin):
    # Denied roles first: an allowed request may change the world the next one sees (a 404 or
    # 409 after that still shows the permission check passed).
    return {"auditor": dave, "developer": bob, "ciso": erin, "owner": alice}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids(ENDPOINTS))
def test_each_role_gets_exactly_what_the_role_table_grants(client, world, cast, endpoint):
    roles = sorted(cast, key=lambda role: role_can(role, endpoint.action))
    for role in roles:
        api = session_api(client, cast[role])
        before = outbox_count()
        response = send(api, endpoint, world)
        if role_can(role, endpoint.action):
            assert response.status_code not in (401, 403), (role, response.content)
        else:
            assert response.status_code == 403, (role, response.content)
            problem = response.json()
            assert response["Content-Type"] == "application/problem+json"
            assert problem["code"] == "permission_denied"
            assert problem["reason"] == "role"
            assert problem["required_action"] == endpoint.action.value
            assert outbox_count() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids(ENDPOINTS))
def test_a_key_needs_the_scope_of_the_method(client, world, acme, alice, endpoint):
    needed = "read" if endpoint.safe else "write"
    other = "write" if needed == "read" else "read"
    scopes = [other, "proxy", "ingest", "admin"]
    lacking = Api(client, make_key(acme, alice, scopes, name="lacking")[1])
    before = outbox_count()
    response = send(lacking, endpoint, world)
    assert response.status_code == 403, response.content
    assert response.json()["required_scope"] == needed
    assert outbox_count() == before
    having = Api(client, make_key(acme, alice, [needed, "admin"], name="having")[1])
    assert send(having, endpoint, world).status_code not in (401, 403)


ADMIN_ENDPOINTS = [e for e in ENDPOINTS if e.admin]


@pytest.mark.parametrize("endpoint", ADMIN_ENDPOINTS, ids=ids(ADMIN_ENDPOINTS))
def test_managing_members_and_keys_with_a_key_needs_the_admin_scope(
    client, world, acme_key, endpoint
):
    response = send(Api(client, acme_key[1]), endpoint, world)
    assert response.status_code == 403
    assert response.json()["required_scope"] == "admin"


def test_a_read_only_key_reads_but_cannot_write(client, world, acme, alice):
    reader = Api(client, make_key(acme, alice, ["read"], name="reader")[1])
    assert reader.get("servers/").status_code == 200
    response = reader.patch(f"servers/{world.server.id}/", {"description": "changed"})
    assert response.status_code == 403
    assert response.json()["detail"] == "This API key lacks the 'write' scope."
    world.server.refresh_from_db()
    assert world.server.description == ""


def test_a_console_session_has_no_scopes_but_keeps_its_role(client, world, bob):
    api = session_api(client, bob)
    assert api.patch(f"servers/{world.server.id}/", {"description": "x"}).status_code == 200
    assert api.post("invitations/", {"email": "z@acme.test", "role": "auditor"}).status_code == 403


def test_a_key_acts_with_its_creators_current_role(client, world, acme, bob):
    from governance.models import Membership

    key = Api(client, make_key(acme, bob, ["read", "write"], name="bob's")[1])
    assert key.patch(f"servers/{world.server.id}/", {"description": "x"}).status_code == 200
    Membership.objects.filter(org=acme, user=bob).update(role="auditor")
    assert key.patch(f"servers/{world.server.id}/", {"description": "y"}).status_code == 403


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("Bearer", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer ig_notakey", "malformed"),
        ("Bearer ig_ABCDEFGH" + "x" * 40, "invalid"),
    ],
)
def test_it_says_why_a_request_is_unauthenticated(client, acme, header, reason):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/servers/", headers=headers)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="igris"'
    problem = response.json()
    assert problem["code"] == "unauthenticated"
    assert problem["reason"] == reason


def test_a_revoked_or_expired_key_is_refused_with_its_reason(client, acme, alice):
    from datetime import timedelta

    from django.utils import timezone

    from governance.models import ApiKey
    from governance.services.api_keys import api_key_revoke

    key, token = make_key(acme, alice, ["read"], name="old")
    api_key_revoke(org=acme, actor=alice, key=key)
    assert Api(client, token).get("servers/").json()["reason"] == "revoked"
    key, token = make_key(acme, alice, ["read"], name="short")
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Api(client, token).get("servers/")
    assert (response.status_code, response.json()["reason"]) == (401, "expired")
