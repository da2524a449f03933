from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.http import Http404
from django.utils import timezone

from governance.models import Invitation, Membership, Organization, PendingEvent
from governance.permissions import PermissionDenied
from governance.selectors import keys as key_selectors
from governance.selectors import members as member_selectors
from governance.services.base import ServiceError
from governance.services.members import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    member_change_role,
    member_remove,
)
from governance.services.organizations import (
    organization_create,
    organization_delete,
    organization_update,
)


def _events(org):
    return [e.payload["type"] for e in PendingEvent.objects.filter(org_id=org.id).order_by("id")]


def test_creating_an_organisation_makes_the_creator_its_owner(alice):
    org = organization_create(name="Initech Labs", owner=alice)
    assert org.slug == "initech-labs"
    assert Membership.objects.get(org=org, user=alice).role == "owner"
    assert _events(org) == ["org.created"]


def test_a_blank_name_is_refused_and_nothing_is_written(alice):
    with pytest.raises(ServiceError, match="name"):
        organization_create(name="   ", owner=alice)
    assert Organization.objects.count() == 0


def test_a_user_can_belong_to_several_organisations(acme, globex, alice, charlie):
    invitation, token = invitation_create(
        org=globex, actor=charlie, email=alice.email, role="auditor"
    )
    invitation_accept(token=token, user=alice)
    assert list(
        member_selectors.organizations_for_user(user=alice).values_list("slug", flat=True)
    ) == [
        "acme",
        "globex",
    ]


def test_the_last_owner_cannot_be_demoted_or_removed(acme, alice):
    owner = Membership.objects.get(org=acme, user=alice)
    with pytest.raises(ServiceError, match="at least one owner"):
        member_change_role(org=acme, actor=alice, membership=owner, role="admin")
    with pytest.raises(ServiceError, match="at least one owner"):
        member_remove(org=acme, actor=alice, membership=owner)
    assert Membership.objects.get(org=acme, user=alice).role == "owner"


def test_an_owner_can_hand_over_and_then_step_down(acme, alice, bob):
    bob_m = Membership.objects.get(org=acme, user=bob)
    member_change_role(org=acme, actor=alice, membership=bob_m, role="owner")
    alice_m = Membership.objects.get(org=acme, user=alice)
    member_change_role(org=acme, actor=alice, membership=alice_m, role="auditor")
    assert Membership.objects.get(org=acme, user=alice).role == "auditor"
    assert "member.role_changed" in _events(acme)


def test_a_developer_cannot_change_roles_or_invite(acme, bob, alice):
    alice_m = Membership.objects.get(org=acme, user=alice)
    with pytest.raises(PermissionDenied):
        member_change_role(org=acme, actor=bob, membership=alice_m, role="auditor")
    with pytest.raises(PermissionDenied):
        invitation_create(org=acme, actor=bob, email="eve@acme.test", role="developer")
    assert Invitation.objects.count() == 0


def test_an_admin_cannot_make_or_unmake_owners(acme, alice, bob):
    bob_m = Membership.objects.get(org=acme, user=bob)
    member_change_role(org=acme, actor=alice, membership=bob_m, role="admin")
    alice_m = Membership.objects.get(org=acme, user=alice)
    with pytest.raises(PermissionDenied):
        member_change_role(org=acme, actor=bob, membership=alice_m, role="developer")
    with pytest.raises(PermissionDenied):
        member_change_role(org=acme, actor=bob, membership=bob_m, role="owner")


def test_unknown_roles_are_refused(acme, alice, bob):
    with pytest.raises(ServiceError, match="Unknown role"):
        member_change_role(
            org=acme, actor=alice, membership=Membership.objects.get(user=bob), role="god"
        )


def test_a_member_can_leave(acme, bob):
    member_remove(org=acme, actor=bob, membership=Membership.objects.get(org=acme, user=bob))
    assert not Membership.objects.filter(org=acme, user=bob).exists()


def test_an_invitation_is_mailed_and_accepted_once(
    acme, alice, charlie, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = invitation_create(
            org=acme, actor=alice, email="Charlie@Globex.test", role="ciso"
        )
    assert invitation.email == "charlie@globex.test"
    assert token not in invitation.token_hash
    assert len(mail.outbox) == 1 and f"/invitations/{token}/" in mail.outbox[0].body
    membership = invitation_accept(token=token, user=charlie)
    assert membership.role == "ciso" and membership.org == acme
    with pytest.raises(ServiceError, match="already used"):
        invitation_accept(token=token, user=charlie)
    assert _events(acme)[-2:] == ["invitation.created", "invitation.accepted"]


def test_inviting_an_existing_member_or_twice_is_a_clear_error(acme, alice):
    with pytest.raises(ServiceError, match="already a member"):
        invitation_create(org=acme, actor=alice, email="BOB@acme.test", role="developer")
    invitation_create(org=acme, actor=alice, email="dave@acme.test", role="developer")
    with pytest.raises(ServiceError, match="open invitation"):
        invitation_create(org=acme, actor=alice, email="dave@acme.test", role="admin")
    assert Invitation.objects.filter(org=acme).count() == 1


def test_an_expired_invitation_cannot_be_accepted_but_can_be_sent_again(acme, alice, charlie):
    invitation, token = invitation_create(
        org=acme, actor=alice, email=charlie.email, role="auditor"
    )
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    with pytest.raises(ServiceError, match="expired"):
        invitation_accept(token=token, user=charlie)
    assert not Membership.objects.filter(org=acme, user=charlie).exists()
    _, token2 = invitation_create(org=acme, actor=alice, email=charlie.email, role="auditor")
    invitation_accept(token=token2, user=charlie)
    assert Membership.objects.filter(org=acme, user=charlie).exists()


def test_a_revoked_invitation_or_one_for_someone_else_is_refused(acme, alice, bob, charlie):
    invitation, token = invitation_create(
        org=acme, actor=alice, email="zed@acme.test", role="auditor"
    )
    with pytest.raises(ServiceError, match="for zed@acme.test"):
        invitation_accept(token=token, user=charlie)
    invitation_revoke(org=acme, actor=alice, invitation=invitation)
    with pytest.raises(ServiceError, match="revoked"):
        invitation_accept(token=token, user=charlie)
    with pytest.raises(ServiceError, match="not valid"):
        invitation_accept(token="nonsense", user=charlie)


def test_settings_are_validated_and_audited(acme, alice, bob):
    organization_update(org=acme, actor=alice, default_posture="allow", audit_retention_days=200)
    acme.refresh_from_db()
    assert acme.default_posture == "allow"
    with pytest.raises(ServiceError, match="default_posture"):
        organization_update(org=acme, actor=alice, default_posture="maybe")
    with pytest.raises(ServiceError, match="Unknown setting"):
        organization_update(org=acme, actor=alice, slug="hijack")
    with pytest.raises(PermissionDenied):
        organization_update(org=acme, actor=bob, name="Bob's")
    assert _events(acme).count("org.updated") == 1


def test_audit_retention_below_the_legal_minimum_is_refused(acme, alice, settings):
    # EU AI Act Art. 19 and 26(6): at least six months; the minimum is a setting, 183 by default.
    assert settings.IGRIS_AUDIT_RETENTION_MIN_DAYS == 183
    for days in (1, 182, 0):
        with pytest.raises(ServiceError, match="below the minimum of 183 days") as refused:
            organization_update(org=acme, actor=alice, audit_retention_days=days)
        assert refused.value.field == "audit_retention_days"
    acme.refresh_from_db()
    assert acme.audit_retention_days == 400
    assert "org.updated" not in _events(acme)
    organization_update(org=acme, actor=alice, audit_retention_days=183)
    acme.refresh_from_db()
    assert acme.audit_retention_days == 183


def test_a_higher_minimum_applies_to_changes_and_to_new_organisations(acme, alice, settings):
    settings.IGRIS_AUDIT_RETENTION_MIN_DAYS = 730
    with pytest.raises(ServiceError, match="400 is below the minimum of 730 days"):
        organization_update(org=acme, actor=alice, name="Acme Corp")
    org = organization_create(name="Initech Labs", owner=alice)
    assert org.audit_retention_days == 730


def test_only_an_owner_can_delete_the_organisation(acme, alice, bob):
    with pytest.raises(PermissionDenied):
        organization_delete(org=acme, actor=bob)
    org_id = acme.id
    organization_delete(org=acme, actor=alice)
    assert not Organization.objects.filter(slug="acme").exists()
    # The audit trail outlives the organisation.
    assert PendingEvent.objects.filter(org_id=org_id, payload__type="org.deleted").count() == 1


def test_charlie_never_reaches_acme_objects_through_selectors(
    acme, globex, charlie, acme_key, alice
):
    invitation, _ = invitation_create(org=acme, actor=alice, email="x@acme.test", role="auditor")
    alice_m = Membership.objects.get(org=acme, user=alice)
    with pytest.raises(Http404):
        member_selectors.member_get_for_org(org=globex, membership_id=alice_m.pk)
    with pytest.raises(Http404):
        member_selectors.invitation_get_for_org(org=globex, invitation_id=invitation.pk)
    with pytest.raises(Http404):
        key_selectors.api_key_get_for_org(org=globex, key_id=acme_key[0].pk)
    with pytest.raises(Http404):
        key_selectors.api_key_get_for_org(org=globex, key_id="not-a-uuid")
    assert (
        not member_selectors.members_for_org(org=globex)
        .filter(user__email__endswith="acme.test")
        .exists()
    )
    assert key_selectors.api_keys_for_org(org=globex).count() == 0
    assert member_selectors.role_of(org=acme, user=charlie) is None
