"""The organisation, members, invitations and API keys through the API: answers and stored state."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, make_key, session_api

pytestmark = pytest.mark.django_db

SECRET_FIELDS = {"secret", "salt", "secret_hash", "plaintext"}


def test_it_shows_and_changes_the_organisations_settings(api, acme):
    body = api.get("organization/").json()
    assert body["slug"] == "acme"
    assert body["id"] == str(acme.id)
    assert body["created_at"].endswith("Z")
    changed = api.patch(
        "organization/", {"default_posture": "allow", "redact_argument_keys": ["ssn"]}
    )
    assert changed.status_code == 200
    assert changed.json()["default_posture"] == "allow"
    acme.refresh_from_db()
    assert (acme.default_posture, acme.redact_argument_keys) == ("allow", ["ssn"])


def test_audit_retention_below_the_minimum_is_refused_naming_it(api, acme, settings):
    for days in (1, 182, -5):
        response = api.patch("organization/", {"audit_retention_days": days})
        assert response.status_code == 400
        assert response["Content-Type"] == "application/problem+json"
        [error] = response.json()["errors"]
        assert error["field"] == "audit_retention_days"
        assert f"{days} is below the minimum of 183 days" in error["message"]
        assert "EU AI Act" in error["message"]
    acme.refresh_from_db()
    assert acme.audit_retention_days == 400
    assert api.patch("organization/", {"audit_retention_days": 183}).status_code == 200
    settings.IGRIS_AUDIT_RETENTION_MIN_DAYS = 365
    response = api.patch("organization/", {"audit_retention_days": 300})
    assert "minimum of 365 days" in response.json()["errors"][0]["message"]
    acme.refresh_from_db()
    assert acme.audit_retention_days == 183


def test_it_lists_members_with_string_ids_and_changes_a_role(api, acme, world):
    from governance.models import Membership

    members = api.get("members/").json()["results"]
    assert [m["email"] for m in members][:2] == ["alice@acme.test", "bob@acme.test"]
    assert all(isinstance(m["id"], str) and isinstance(m["user_id"], str) for m in members)
    answer = api.patch(f"members/{world.bob_member.id}/", {"role": "ciso"})
    assert answer.json()["role"] == "ciso"
    assert Membership.objects.get(pk=world.bob_member.pk).role == "ciso"


def test_the_last_owner_stays_an_owner(api, acme, alice):
    from governance.models import Membership

    owner = Membership.objects.get(org=acme, user=alice)
    response = api.patch(f"members/{owner.id}/", {"role": "developer"})
    assert response.status_code == 409
    assert response.json()["code"] == "last_owner"
    assert api.delete(f"members/{owner.id}/").status_code == 409
    assert Membership.objects.get(pk=owner.pk).role == "owner"


def test_an_admin_may_not_touch_an_owner(client, acme, alice, olga):
    from governance.models import Membership

    owner = Membership.objects.get(org=acme, user=alice)
    response = session_api(client, olga).delete(f"members/{owner.id}/")
    assert response.status_code == 403
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_removing_a_member_deletes_the_membership(api, world):
    from governance.models import Membership

    assert api.delete(f"members/{world.member.id}/").status_code == 204
    assert not Membership.objects.filter(pk=world.member.pk).exists()
    assert api.get(f"members/{world.member.id}/").status_code == 404


def test_invitations_are_created_listed_and_revoked(api, world):
    from governance.models import Invitation

    created = api.post("invitations/", {"email": "Zoe@Acme.test", "role": "auditor"})
    assert created.status_code == 201
    assert created.json()["email"] == "zoe@acme.test"
    assert "token" not in created.json() and "token_hash" not in created.json()
    listed = [i["email"] for i in api.get("invitations/").json()["results"]]
    assert listed == ["zoe@acme.test", "newcomer@acme.test"]
    again = api.post("invitations/", {"email": "zoe@acme.test", "role": "auditor"})
    assert (again.status_code, again.json()["code"]) == (409, "already_invited")
    invitation_id = created.json()["id"]
    assert api.delete(f"invitations/{invitation_id}/").status_code == 204
    assert Invitation.objects.get(pk=invitation_id).revoked_at is not None
    assert api.delete(f"invitations/{invitation_id}/").status_code == 409
    assert [i["email"] for i in api.get("invitations/").json()["results"]] == ["newcomer@acme.test"]


def test_an_api_keys_secret_is_in_its_creation_answer_only(client, api, world):
    created = api.post(
        "api-keys/",
        {
            "name": "deploy",
            "scopes": ["read"],
            "tags": ["ci"],
            "allowed_servers": [str(world.server.id)],
        },
    )
    assert created.status_code == 201
    assert created["Cache-Control"] == "no-store"
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("ig_" + body["prefix"])
    assert body["allowed_servers"] == [str(world.server.id)]
    assert body["display"] == f"ig_{body['prefix']}…"
    assert Api(client, secret).get("servers/").status_code == 200
    detail = api.get(f"api-keys/{body['id']}/")
    listed = api.get("api-keys/")
    for answer in (detail, listed):
        assert secret not in answer.content.decode()
        assert secret[len("ig_") + 8 :] not in answer.content.decode()
    assert not SECRET_FIELDS & set(detail.json())
    assert all(not SECRET_FIELDS & set(k) for k in listed.json()["results"])


def test_a_revoked_key_stops_working(client, api, acme, alice):
    key, token = make_key(acme, alice, ["read"], name="temp")
    assert api.delete(f"api-keys/{key.id}/").status_code == 204
    key.refresh_from_db()
    assert key.revoked_at is not None
    response = Api(client, token).get("servers/")
    assert (response.status_code, response.json()["reason"]) == (401, "revoked")
    assert api.delete(f"api-keys/{key.id}/").json()["code"] == "already_revoked"


def test_a_developer_sees_and_revokes_only_their_own_keys(client, world, acme, alice, bob):
    own, _ = make_key(acme, bob, ["read"], name="bob's")
    api = session_api(client, bob)
    assert [k["id"] for k in api.get("api-keys/").json()["results"]] == [str(own.id)]
    assert api.get(f"api-keys/{world.key.id}/").status_code == 404
    assert api.delete(f"api-keys/{world.key.id}/").status_code == 404
    world.key.refresh_from_db()
    assert world.key.revoked_at is None
    assert api.delete(f"api-keys/{own.id}/").status_code == 204


def test_a_developer_cannot_mint_an_admin_key(client, acme, bob):
    from governance.models import ApiKey

    response = session_api(client, bob).post("api-keys/", {"name": "x", "scopes": ["admin"]})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(name="x").exists()


def test_lists_page_with_an_opaque_cursor(api, acme, alice):
    for i in range(5):
        make_key(acme, alice, ["read"], name=f"k{i}")
    seen, cursor = [], None
    while True:
        page = api.get("api-keys/", limit=2, **({"cursor": cursor} if cursor else {})).json()
        seen += [k["name"] for k in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["k4", "k3", "k2", "k1", "k0", "acme admin"]
