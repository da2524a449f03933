"""The server-rendered console: pages, role enforcement, tenant isolation, forms, invitations."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.middleware import SESSION_ORG_KEY
from governance.models import ApiKey, Invitation, McpServer, Membership, Organization
from governance.services import members as member_services
from governance.services import servers as server_services
from governance.services.api_keys import api_key_create
from governance.services.members import invitation_create
from governance.services.organizations import organization_create
from tests.conftest import PASSWORD, _user, login

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_server(acme, alice):
    return server_services.server_create(
        org=acme,
        actor=alice,
        name="Acme tools",
        slug="acme-tools",
        upstream_url="https://mcp.acme.test/mcp",
    )


@pytest.fixture
def acme_invitation(acme, alice):
    """An open acme invitation for dave: (Invitation, token)."""
    return invitation_create(org=acme, actor=alice, email="dave@acme.test", role="developer")


@pytest.fixture
def dave(db):
    return _user("dave@acme.test")


def _bob_key(acme, bob):
    return api_key_create(org=acme, actor=bob, name="bob laptop", scopes=["proxy"])


def _text(response) -> str:
    return response.content.decode()


# --- pages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "console:home",
        "console:members",
        "console:keys",
        "console:key_create",
        "console:servers",
        "console:server_create",
        "console:org_settings",
        "console:org_create",
    ],
)
def test_every_console_page_renders_for_the_owner(client, alice, acme, acme_server, acme_key, name):
    login(client, alice)
    response = client.get(reverse(name))
    assert response.status_code == 200
    body = _text(response)
    assert "Acme" in body
    assert 'href="/static/css/igris.css"' in body


def test_the_server_edit_page_renders_with_its_proxy_url(client, alice, acme, acme_server):
    login(client, alice)
    response = client.get(reverse("console:server_edit", args=[acme_server.id]))
    assert response.status_code == 200
    assert "/proxy/acme-tools/mcp" in _text(response)


def test_the_overview_shows_counts_and_the_quick_start(client, alice, acme, acme_server, acme_key):
    login(client, alice)
    body = _text(client.get(reverse("console:home")))
    assert 'data-testid="count-members">2<' in body
    assert 'data-testid="count-keys">1<' in body
    assert 'data-testid="count-servers">1<' in body
    assert (
        "claude mcp add --transport http acme-tools http://testserver/proxy/acme-tools/mcp" in body
    )
    assert '--header "Authorization: Bearer $IGRIS_API_KEY"' in body
    assert '"headers": { "Authorization": "Bearer ${IGRIS_API_KEY}" }' in body
    assert "ig_…" in body


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get(reverse("console:members"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=/members/")


def test_a_user_without_an_organisation_is_sent_to_create_one(client, dave):
    login(client, dave)
    response = client.get(reverse("console:home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("console:org_create")
    page = client.get(reverse("console:org_create"))
    assert page.status_code == 200
    assert "Create an organisation" in _text(page)


def test_navigation_only_links_pages_that_exist_and_the_role_may_see(client, bob, acme):
    login(client, bob)
    body = _text(client.get(reverse("console:home")))
    for name in ("console:members", "console:keys", "console:servers", "console:org_settings"):
        assert f'href="{reverse(name)}"' in body
    # Pages appear once their URL exists and the role may see them; billing is not wired.
    assert f'href="{reverse("console:policies")}"' in body
    assert "/billing/" not in body


def test_an_auditor_does_not_see_api_keys_and_gets_403_on_the_page(client, acme, dave):
    Membership.objects.create(org=acme, user=dave, role="auditor")
    login(client, dave)
    assert f'href="{reverse("console:keys")}"' not in _text(client.get(reverse("console:home")))
    response = client.get(reverse("console:keys"))
    assert response.status_code == 403
    assert "cannot see API keys" in _text(response)


# --- organisations -----------------------------------------------------------------------------


def test_creating_an_organisation_makes_the_user_its_owner_and_selects_it(client, dave):
    login(client, dave)
    response = client.post(reverse("console:org_create"), {"name": "Initech", "slug": ""})
    assert response.status_code == 302
    org = Organization.objects.get(name="Initech")
    assert org.slug == "initech"
    assert Membership.objects.get(org=org, user=dave).role == "owner"
    assert client.session[SESSION_ORG_KEY] == str(org.id)
    assert "Created Initech" in _text(client.get(reverse("console:home")))


def test_an_organisation_with_a_taken_or_bad_slug_is_refused(client, dave, acme):
    login(client, dave)
    taken = client.post(reverse("console:org_create"), {"name": "Other", "slug": "acme"})
    assert taken.status_code == 200
    assert "The slug &#x27;acme&#x27; is taken." in _text(taken)
    bad = client.post(reverse("console:org_create"), {"name": "Other", "slug": "No Spaces!"})
    assert bad.status_code == 200
    assert "Use 3-64 lowercase letters" in _text(bad)
    assert not Organization.objects.filter(name="Other").exists()


def test_switching_to_an_organisation_the_user_belongs_to(client, alice, acme):
    second = organization_create(name="Acme Labs", owner=alice, slug="acme-labs")
    login(client, alice)
    response = client.post(reverse("console:org_switch"), {"org_id": str(second.id)})
    assert response.status_code == 302
    assert client.session[SESSION_ORG_KEY] == str(second.id)
    assert "<h1>Acme Labs</h1>" in _text(client.get(reverse("console:home")))


@pytest.mark.parametrize("org_id", ["globex", "not-a-uuid", ""])
def test_switching_to_a_foreign_organisation_is_refused(client, alice, acme, globex, org_id):
    login(client, alice)
    client.get(reverse("console:home"))
    value = str(globex.id) if org_id == "globex" else org_id
    response = client.post(reverse("console:org_switch"), {"org_id": value})
    assert response.status_code == 404
    assert client.session[SESSION_ORG_KEY] == str(acme.id)


def test_switching_is_post_only(client, alice, acme):
    login(client, alice)
    assert client.get(reverse("console:org_switch")).status_code == 405


def test_the_owner_updates_the_settings(client, alice, acme):
    login(client, alice)
    response = client.post(
        reverse("console:org_settings"),
        {
            "name": "Acme Corp",
            "default_posture": "allow",
            "block_drifted_tools": "",
            "auto_suspend_on_anomaly": "on",
            "audit_retention_days": "365",
            "redact_argument_keys": "customer_id, iban",
        },
    )
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.name == "Acme Corp"
    assert acme.default_posture == "allow"
    assert acme.block_drifted_tools is False
    assert acme.auto_suspend_on_anomaly is True
    assert acme.audit_retention_days == 365
    assert acme.redact_argument_keys == ["customer_id", "iban"]
    assert "Settings saved." in _text(client.get(reverse("console:org_settings")))


def test_bad_settings_are_shown_on_the_form_and_not_saved(client, alice, acme):
    login(client, alice)
    response = client.post(
        reverse("console:org_settings"),
        {"name": "", "default_posture": "maybe", "audit_retention_days": "0"},
    )
    assert response.status_code == 200
    body = _text(response)
    assert "This field is required." in body
    assert "Select a valid choice." in body
    assert "0 is below the minimum of 183 days" in body
    acme.refresh_from_db()
    assert acme.name == "Acme"


def test_audit_retention_below_the_legal_minimum_is_a_form_error(client, alice, acme):
    login(client, alice)
    page = _text(client.get(reverse("console:org_settings")))
    assert re.search(r'name="audit_retention_days"[^>]*min="183"', page)
    response = client.post(
        reverse("console:org_settings"),
        {"name": "Acme", "default_posture": "deny", "audit_retention_days": "1"},
    )
    assert response.status_code == 200
    error = re.search(
        r'id="id_audit_retention_days">\s*<p class="field-error" role="alert">([^<]*)</p>',
        _text(response),
    ).group(1)
    assert error.startswith("1 is below the minimum of 183 days: the EU AI Act")
    acme.refresh_from_db()
    assert acme.audit_retention_days == 400


def test_a_developer_reads_the_settings_but_cannot_change_them(client, bob, acme):
    login(client, bob)
    page = client.get(reverse("console:org_settings"))
    assert page.status_code == 200
    assert "Save settings" not in _text(page)
    assert "Delete this organisation" not in _text(page)
    response = client.post(
        reverse("console:org_settings"),
        {"name": "Hacked", "default_posture": "allow", "audit_retention_days": "1"},
    )
    assert response.status_code == 403
    acme.refresh_from_db()
    assert acme.name == "Acme"
    assert acme.default_posture == "deny"


def test_a_developer_cannot_delete_the_organisation(client, bob, acme):
    login(client, bob)
    response = client.post(reverse("console:org_delete"), {"confirm_slug": "acme"})
    assert response.status_code == 403
    assert "You can't do that here" in _text(response)
    assert Organization.objects.filter(pk=acme.pk).exists()


def test_deleting_the_organisation_needs_its_slug_typed(client, alice, acme):
    login(client, alice)
    wrong = client.post(reverse("console:org_delete"), {"confirm_slug": "acm"})
    assert wrong.status_code == 200
    assert "Type &#x27;acme&#x27; exactly" in _text(wrong)
    assert Organization.objects.filter(pk=acme.pk).exists()

    response = client.post(reverse("console:org_delete"), {"confirm_slug": "acme"})
    assert response.status_code == 302
    assert not Organization.objects.filter(pk=acme.pk).exists()
    # Alice has no organisation left: the console asks her to create one.
    assert client.get(reverse("console:home"))["Location"] == reverse("console:org_create")


# --- members -----------------------------------------------------------------------------------


def test_the_owner_changes_a_role(client, alice, bob, acme):
    login(client, alice)
    membership = Membership.objects.get(org=acme, user=bob)
    response = client.post(reverse("console:member_role", args=[membership.id]), {"role": "admin"})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "admin"
    assert "bob@acme.test is now admin." in _text(client.get(reverse("console:members")))


def test_a_developer_cannot_change_roles_invite_or_remove(client, alice, bob, acme):
    login(client, bob)
    alice_membership = Membership.objects.get(org=acme, user=alice)
    bob_membership = Membership.objects.get(org=acme, user=bob)

    page = _text(client.get(reverse("console:members")))
    assert "Send invitation" not in page
    assert reverse("console:member_role", args=[alice_membership.id]) not in page

    promote = client.post(
        reverse("console:member_role", args=[bob_membership.id]), {"role": "owner"}
    )
    assert promote.status_code == 403
    invite = client.post(
        reverse("console:member_invite"), {"email": "eve@evil.test", "role": "owner"}
    )
    assert invite.status_code == 403
    remove = client.post(reverse("console:member_remove", args=[alice_membership.id]))
    assert remove.status_code == 403

    bob_membership.refresh_from_db()
    assert bob_membership.role == "developer"
    assert Membership.objects.filter(org=acme, user=alice, role="owner").exists()
    assert not Invitation.objects.exists()


def test_an_admin_cannot_make_owners(client, bob, acme):
    Membership.objects.filter(org=acme, user=bob).update(role="admin")
    login(client, bob)
    page = _text(client.get(reverse("console:members")))
    assert '<option value="owner"' not in page
    response = client.post(
        reverse("console:member_invite"), {"email": "eve@acme.test", "role": "owner"}
    )
    assert response.status_code == 200
    assert "Select a valid choice." in _text(response)
    assert not Invitation.objects.exists()


def test_the_last_owner_cannot_step_down_or_leave(client, alice, acme):
    login(client, alice)
    membership = Membership.objects.get(org=acme, user=alice)
    response = client.post(
        reverse("console:member_role", args=[membership.id]), {"role": "developer"}, follow=True
    )
    assert response.status_code == 200
    assert "An organisation keeps at least one owner" in _text(response)
    membership.refresh_from_db()
    assert membership.role == "owner"

    leave = client.post(reverse("console:member_leave"), follow=True)
    assert "An organisation keeps at least one owner" in _text(leave)
    assert Membership.objects.filter(org=acme, user=alice).exists()


def test_a_member_leaves_the_organisation(client, bob, acme):
    login(client, bob)
    response = client.post(reverse("console:member_leave"))
    assert response.status_code == 302
    assert not Membership.objects.filter(org=acme, user=bob).exists()
    assert SESSION_ORG_KEY not in client.session


def test_the_owner_removes_a_member(client, alice, bob, acme):
    login(client, alice)
    membership = Membership.objects.get(org=acme, user=bob)
    response = client.post(reverse("console:member_remove", args=[membership.id]), follow=True)
    assert "Removed bob@acme.test from Acme." in _text(response)
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_an_invitation_is_sent_and_listed_as_pending(
    client, alice, acme, mailoutbox, django_capture_on_commit_callbacks
):
    login(client, alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("console:member_invite"), {"email": "Dave@Acme.test", "role": "developer"}
        )
    assert response.status_code == 302
    invitation = Invitation.objects.get(org=acme)
    assert invitation.email == "dave@acme.test"
    assert len(mailoutbox) == 1
    assert "/invitations/" in mailoutbox[0].body
    page = _text(client.get(reverse("console:members")))
    assert "Invited dave@acme.test as developer." in page
    assert 'data-testid="invitations-table"' in page
    assert reverse("console:invitation_revoke", args=[invitation.id]) in page


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("not-an-email", "Enter a valid email address."),
        ("bob@acme.test", "bob@acme.test is already a member of Acme."),
        ("", "This field is required."),
    ],
)
def test_a_bad_invitation_is_shown_on_the_email_field(client, alice, acme, email, message):
    login(client, alice)
    response = client.post(reverse("console:member_invite"), {"email": email, "role": "developer"})
    assert response.status_code == 200
    body = _text(response)
    assert f'<p class="field-error" role="alert">{message}</p>' in body
    assert not Invitation.objects.exists()


def test_a_second_open_invitation_for_the_same_address_is_refused(
    client, alice, acme, acme_invitation
):
    login(client, alice)
    response = client.post(
        reverse("console:member_invite"), {"email": "dave@acme.test", "role": "admin"}
    )
    assert response.status_code == 200
    assert "already has an open invitation" in _text(response)
    assert Invitation.objects.count() == 1


def test_the_owner_revokes_an_invitation(client, alice, acme, acme_invitation):
    invitation, _token = acme_invitation
    login(client, alice)
    response = client.post(reverse("console:invitation_revoke", args=[invitation.id]), follow=True)
    assert "Revoked the invitation for dave@acme.test." in _text(response)
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None


# --- invitation acceptance ---------------------------------------------------------------------


def test_a_signed_out_visitor_sees_the_invitation_and_links_to_sign_in(client, acme_invitation):
    _invitation, token = acme_invitation
    url = reverse("console:invitation_accept", args=[token])
    response = client.get(url)
    assert response.status_code == 200
    body = _text(response)
    assert "Join Acme" in body
    assert "alice@acme.test" in body
    assert "developer" in body
    assert f"/accounts/login/?next=/invitations/{token}/" in body
    assert f"/accounts/signup/?next=/invitations/{token}/" in body
    # Posting while signed out accepts nothing and asks to sign in.
    post = client.post(url)
    assert post.status_code == 302
    assert post["Location"].startswith(reverse("account_login"))


def test_the_invited_user_accepts_and_lands_in_the_organisation(
    client, acme, dave, acme_invitation
):
    invitation, token = acme_invitation
    login(client, dave)
    url = reverse("console:invitation_accept", args=[token])
    assert "Accept and join Acme" in _text(client.get(url))
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("console:home")
    assert Membership.objects.get(org=acme, user=dave).role == "developer"
    assert client.session[SESSION_ORG_KEY] == str(acme.id)
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    assert "Welcome to Acme" in _text(client.get(reverse("console:home")))


def test_another_user_cannot_accept_someone_elses_invitation(
    client, acme, charlie, globex, acme_invitation
):
    _invitation, token = acme_invitation
    login(client, charlie)
    url = reverse("console:invitation_accept", args=[token])
    page = _text(client.get(url))
    assert "but this invitation is for <strong>dave@acme.test</strong>" in page
    response = client.post(url)
    assert response.status_code == 200
    assert "This invitation is for dave@acme.test; sign in with that address." in _text(response)
    assert not Membership.objects.filter(org=acme, user=charlie).exists()
    assert client.session[SESSION_ORG_KEY] == str(globex.id)


def test_an_expired_invitation_cannot_be_accepted(client, acme, dave, acme_invitation):
    invitation, token = acme_invitation
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    login(client, dave)
    url = reverse("console:invitation_accept", args=[token])
    assert "This invitation has expired" in _text(client.get(url))
    response = client.post(url)
    assert response.status_code == 200
    assert "This invitation has expired: ask for a new one." in _text(response)
    assert not Membership.objects.filter(org=acme, user=dave).exists()


def test_a_revoked_invitation_cannot_be_accepted(client, acme, alice, dave, acme_invitation):
    invitation, token = acme_invitation
    member_services.invitation_revoke(org=acme, actor=alice, invitation=invitation)
    login(client, dave)
    url = reverse("console:invitation_accept", args=[token])
    assert "This invitation was revoked." in _text(client.get(url))
    response = client.post(url)
    assert response.status_code == 200
    assert "This invitation was revoked." in _text(response)
    assert not Membership.objects.filter(org=acme, user=dave).exists()


def test_a_used_invitation_cannot_be_used_twice(client, acme, dave, acme_invitation):
    _invitation, token = acme_invitation
    login(client, dave)
    url = reverse("console:invitation_accept", args=[token])
    client.post(url)
    again = client.post(url)
    assert again.status_code == 200
    assert "This invitation was already used." in _text(again)
    assert Membership.objects.filter(org=acme, user=dave).count() == 1


def test_an_unknown_invitation_token_is_a_clear_404(client):
    response = client.get(reverse("console:invitation_accept", args=["nope"]))
    assert response.status_code == 404
    assert "This invitation link is not valid." in _text(response)


# --- API keys ----------------------------------------------------------------------------------


def test_the_key_plaintext_is_shown_exactly_once(client, alice, acme, acme_server):
    login(client, alice)
    response = client.post(
        reverse("console:key_create"),
        {
            "name": "ci agents",
            "scopes": ["proxy", "read"],
            "allowed_servers": [str(acme_server.id)],
            "tags": "ci, team-a, ci",
            "expires_on": (timezone.now() + timedelta(days=30)).date().isoformat(),
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(org=acme, name="ci agents")
    body = _text(response)
    start = body.index('data-testid="new-key">') + len('data-testid="new-key">')
    plaintext = body[start : body.index("<", start)]
    assert plaintext.startswith("ig_" + key.prefix)
    assert body.count(plaintext) == 1
    assert key.scopes == ["proxy", "read"]
    assert key.tags == ["ci", "team-a"]
    assert list(key.allowed_servers.all()) == [acme_server]
    assert key.expires_at is not None
    assert plaintext not in str(dict(client.session))

    listing = _text(client.get(reverse("console:keys")))
    assert plaintext not in listing
    assert plaintext[:12] not in listing
    assert f"ig_{key.prefix}…" in listing
    assert "acme-tools" in listing


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "scopes": ["proxy"]}, "This field is required."),
        ({"name": "no scope"}, "Choose at least one scope."),
        ({"name": "bad scope", "scopes": ["root"]}, "Select a valid choice. root is not one"),
        (
            {"name": "past", "scopes": ["proxy"], "expires_on": "2001-01-01"},
            "must be in the future",
        ),
    ],
)
def test_a_bad_key_form_shows_errors_and_creates_nothing(client, alice, acme, data, message):
    login(client, alice)
    response = client.post(reverse("console:key_create"), data)
    assert response.status_code == 200
    assert message in _text(response)
    assert 'data-testid="new-key"' not in _text(response)
    assert not ApiKey.objects.exists()


def test_a_developer_sees_only_their_own_keys(client, acme, bob, acme_key):
    _bob_key(acme, bob)
    login(client, bob)
    body = _text(client.get(reverse("console:keys")))
    assert "bob laptop" in body
    assert "acme agents" not in body
    assert acme_key[0].prefix not in body


def test_a_ciso_reads_every_key_but_cannot_create_or_revoke(client, acme, bob, dave, acme_key):
    _bob_key(acme, bob)
    Membership.objects.create(org=acme, user=dave, role="ciso")
    login(client, dave)
    body = _text(client.get(reverse("console:keys")))
    assert "bob laptop" in body
    assert "acme agents" in body
    assert "Revoke" not in body
    assert reverse("console:key_create") not in body
    assert client.get(reverse("console:key_create")).status_code == 403
    response = client.post(reverse("console:key_revoke", args=[acme_key[0].id]))
    assert response.status_code == 403
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0


def test_an_empty_post_shows_the_required_fields(client, alice, acme):
    login(client, alice)
    response = client.post(reverse("console:server_create"))
    assert response.status_code == 200
    assert "This field is required." in _text(response)
    assert not McpServer.objects.exists()


def test_a_developer_cannot_mint_admin_keys(client, acme, bob):
    login(client, bob)
    page = _text(client.get(reverse("console:key_create")))
    assert 'value="admin"' not in page
    response = client.post(reverse("console:key_create"), {"name": "x", "scopes": ["admin"]})
    assert response.status_code == 200
    assert not ApiKey.objects.exists()


def test_the_owner_sees_every_key_and_revokes_one(client, alice, acme, bob, acme_key):
    bob_key, _plain = _bob_key(acme, bob)
    login(client, alice)
    page = _text(client.get(reverse("console:keys")))
    assert "bob laptop" in page
    assert "acme agents" in page
    response = client.post(reverse("console:key_revoke", args=[bob_key.id]), follow=True)
    assert "Revoked bob laptop" in _text(response)
    assert 'data-status="revoked"' in _text(response)
    bob_key.refresh_from_db()
    assert bob_key.revoked_at is not None


def test_a_developer_cannot_revoke_someone_elses_key(client, acme, bob, acme_key):
    key, _plain = acme_key
    login(client, bob)
    response = client.post(reverse("console:key_revoke", args=[key.id]))
    assert response.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_revoking_twice_says_so(client, alice, acme, acme_key):
    key, _plain = acme_key
    login(client, alice)
    client.post(reverse("console:key_revoke", args=[key.id]))
    response = client.post(reverse("console:key_revoke", args=[key.id]), follow=True)
    assert "This key is already revoked." in _text(response)


def test_an_expired_key_is_listed_as_expired(client, alice, acme, acme_key):
    key, _plain = acme_key
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(days=1))
    login(client, alice)
    assert 'data-status="expired"' in _text(client.get(reverse("console:keys")))


# --- servers -----------------------------------------------------------------------------------


def _server_data(**overrides):
    data = {
        "name": "GitHub tools",
        "slug": "github",
        "description": "",
        "upstream_url": "https://mcp.github.test/mcp",
        "auth_type": "bearer",
        "auth_header_name": "",
        "credential": "s3cret-token",
        "connect_timeout_s": "5",
        "total_timeout_s": "300",
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_adding_a_server_stores_an_encrypted_credential(client, alice, acme):
    login(client, alice)
    response = client.post(reverse("console:server_create"), _server_data())
    assert response.status_code == 302
    server = McpServer.objects.get(org=acme, slug="github")
    assert server.has_credential
    assert b"s3cret-token" not in bytes(server.credential_encrypted)
    listing = _text(client.get(reverse("console:servers")))
    assert "http://testserver/proxy/github/mcp" in listing
    assert "s3cret-token" not in listing


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"slug": "Bad Slug!"}, "Use 3-64 lowercase letters"),
        ({"slug": "acme-tools"}, "A server with slug &#x27;acme-tools&#x27; exists already."),
        ({"upstream_url": "not a url"}, "Enter a valid URL."),
        ({"credential": ""}, "This authentication type needs a credential."),
        ({"auth_type": "header", "auth_header_name": ""}, "Name the header that carries"),
        ({"connect_timeout_s": "0"}, "greater than or equal to 0.1"),
    ],
)
def test_a_bad_server_form_shows_errors_and_writes_nothing(
    client, alice, acme, acme_server, overrides, message
):
    login(client, alice)
    response = client.post(reverse("console:server_create"), _server_data(**overrides))
    assert response.status_code == 200
    assert message in _text(response)
    assert list(McpServer.objects.values_list("slug", flat=True)) == ["acme-tools"]


def test_editing_a_server_keeps_the_credential_when_left_blank(client, alice, acme):
    server = server_services.server_create(
        org=acme,
        actor=alice,
        credential="keep-me",
        **{
            "name": "GitHub",
            "slug": "github",
            "upstream_url": "https://mcp.github.test/mcp",
            "auth_type": "bearer",
        },
    )
    stored = bytes(server.credential_encrypted)
    login(client, alice)
    page = _text(client.get(reverse("console:server_edit", args=[server.id])))
    assert "keep-me" not in page
    assert "Leave blank to keep it" in page
    response = client.post(
        reverse("console:server_edit", args=[server.id]),
        _server_data(name="GitHub (prod)", credential="", total_timeout_s="60"),
    )
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.name == "GitHub (prod)"
    assert server.total_timeout_s == 60
    assert bytes(server.credential_encrypted) == stored


def test_deleting_a_server(client, alice, acme, acme_server):
    login(client, alice)
    response = client.post(reverse("console:server_delete", args=[acme_server.id]), follow=True)
    assert "Deleted Acme tools." in _text(response)
    assert not McpServer.objects.filter(pk=acme_server.pk).exists()


def test_server_delete_is_post_only(client, alice, acme, acme_server):
    login(client, alice)
    assert client.get(reverse("console:server_delete", args=[acme_server.id])).status_code == 405
    assert McpServer.objects.filter(pk=acme_server.pk).exists()


# --- tenant isolation --------------------------------------------------------------------------


def test_charlie_gets_404_for_every_acme_object(
    client, alice, bob, acme, charlie, globex, acme_server, acme_key, acme_invitation
):
    key, _plain = acme_key
    invitation, _token = acme_invitation
    bob_membership = Membership.objects.get(org=acme, user=bob)
    login(client, charlie)
    attempts = [
        ("post", reverse("console:member_role", args=[bob_membership.id]), {"role": "owner"}),
        ("post", reverse("console:member_remove", args=[bob_membership.id]), {}),
        ("post", reverse("console:invitation_revoke", args=[invitation.id]), {}),
        ("post", reverse("console:key_revoke", args=[key.id]), {}),
        ("get", reverse("console:server_edit", args=[acme_server.id]), {}),
        ("post", reverse("console:server_edit", args=[acme_server.id]), _server_data()),
        ("post", reverse("console:server_delete", args=[acme_server.id]), {}),
    ]
    for method, url, data in attempts:
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, url
        assert "Page not found" in _text(response)

    bob_membership.refresh_from_db()
    assert bob_membership.role == "developer"
    invitation.refresh_from_db()
    assert invitation.revoked_at is None
    key.refresh_from_db()
    assert key.revoked_at is None
    acme_server.refresh_from_db()
    assert acme_server.name == "Acme tools"


def test_charlie_never_sees_acme_data_on_his_pages(
    client, alice, bob, acme, charlie, globex, acme_server, acme_key, acme_invitation
):
    login(client, charlie)
    for name in (
        "console:home",
        "console:members",
        "console:keys",
        "console:servers",
        "console:org_settings",
        "console:key_create",
    ):
        body = _text(client.get(reverse(name)))
        assert "Globex" in body
        for secret in (
            "Acme",
            "alice@acme.test",
            "bob@acme.test",
            "dave@acme.test",
            "acme agents",
            "acme-tools",
            acme_key[0].prefix,
        ):
            assert secret not in body, (name, secret)


# --- query counts ------------------------------------------------------------------------------

# session, user, current membership + org, the user's organisations (switcher)
LAYOUT_QUERIES = 4


def test_the_members_page_query_count_does_not_grow_with_members(
    client, alice, acme, django_assert_num_queries
):
    login(client, alice)
    for n in range(3):
        invitation_create(org=acme, actor=alice, email=f"p{n}@acme.test", role="auditor")
        Membership.objects.create(org=acme, user=_user(f"m{n}@acme.test"), role="developer")
    client.get(reverse("console:members"))
    # layout + members with users + open invitations with inviters
    with django_assert_num_queries(LAYOUT_QUERIES + 2):
        response = client.get(reverse("console:members"))
    assert _text(response).count('class="person"') == 5


def test_the_keys_page_query_count_does_not_grow_with_keys(
    client, alice, acme, acme_server, django_assert_num_queries
):
    login(client, alice)
    for n in range(4):
        api_key_create(
            org=acme,
            actor=alice,
            name=f"key {n}",
            scopes=["proxy"],
            allowed_server_ids=[acme_server.id],
        )
    client.get(reverse("console:keys"))
    # layout + keys with creators + allowed servers (prefetch)
    with django_assert_num_queries(LAYOUT_QUERIES + 2):
        response = client.get(reverse("console:keys"))
    assert _text(response).count("data-key-prefix=") == 4


def test_the_servers_page_query_count_does_not_grow_with_servers(
    client, alice, acme, django_assert_num_queries
):
    login(client, alice)
    for n in range(4):
        server_services.server_create(
            org=acme,
            actor=alice,
            name=f"server {n}",
            slug=f"server-{n}",
            upstream_url=f"https://mcp{n}.acme.test/mcp",
        )
    client.get(reverse("console:servers"))
    with django_assert_num_queries(LAYOUT_QUERIES + 1):
        response = client.get(reverse("console:servers"))
    assert _text(response).count("/proxy/server-") == 4


def test_password_sign_in_works_with_the_console_templates(client, alice, acme):
    response = client.post(
        reverse("account_login"), {"login": "alice@acme.test", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("console:home")
    client.logout()
    wrong = client.post(reverse("account_login"), {"login": "alice@acme.test", "password": "x"})
    assert wrong.status_code == 200
    assert "alert-error" in _text(wrong)


def test_an_open_circuit_shows_on_the_server_pages_and_a_manager_resets_it(
    client, alice, acme, acme_server, django_capture_on_commit_callbacks
):
    import time

    from governance.models import PendingEvent
    from governance.runtime import flags
    from governance.runtime.hotstate.sync import publish_flag_sync

    now = time.time()
    opened = flags.Circuit(state="open", failures=5, opened_at=now, retry_at=now + 30)
    assert publish_flag_sync(flags.circuit(acme_server.id), opened.encode(), ttl_s=60)
    login(client, alice)
    assert 'data-state="open"' in _text(client.get(reverse("console:servers")))
    edit = reverse("console:server_edit", args=[acme_server.id])
    page = _text(client.get(edit))
    assert 'data-state="open"' in page and "After 5 failures in a row" in page
    reset = reverse("console:server_circuit_reset", args=[acme_server.id])
    assert f'action="{reset}"' in page
    assert client.get(reset).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reset)
    assert response.status_code == 302 and response["Location"] == edit
    page = _text(client.get(edit))
    assert "Reset the circuit breaker of Acme tools" in page and 'data-state="closed"' in page
    assert PendingEvent.objects.filter(payload__type="server.circuit_reset").count() == 1
