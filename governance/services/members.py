"""Member and invitation services: change a role, remove a member, invite, accept, revoke.

An organisation always keeps at least one owner, and only an owner grants or takes away the owner
role. Each service records its own event.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from governance import crypto
from governance.events import actor_for_user, emit
from governance.models import Invitation, Membership, Organization, User
from governance.permissions import Action, PermissionDenied, Role
from governance.services.base import ServiceError, _check, _clean

__all__ = [
    "invitation_accept",
    "invitation_by_token",
    "invitation_create",
    "invitation_revoke",
    "member_change_role",
    "member_remove",
]


def _owner_count(org: Organization) -> int:
    return Membership.objects.filter(org=org, role=Role.OWNER).count()


def _valid_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ServiceError(f"Unknown role '{role}'.", field="role") from None


@transaction.atomic
def member_change_role(
    *, org: Organization, actor: User, membership: Membership, role: str
) -> Membership:
    actor_role = _check(org, actor, Action.MEMBERS_MANAGE)
    new_role = _valid_role(role)
    membership = Membership.objects.select_for_update().get(pk=membership.pk, org=org)
    if Role.OWNER in (new_role, membership.role) and actor_role != Role.OWNER:
        raise PermissionDenied(Action.ORG_DELETE, actor_role)
    if membership.role == Role.OWNER and new_role != Role.OWNER and _owner_count(org) <= 1:
        raise ServiceError(
            "An organisation keeps at least one owner: make someone else owner first.",
            field="role",
            code="last_owner",
        )
    old = membership.role
    membership.role = new_role
    membership.save(update_fields=["role"])
    emit(
        org_id=org.id,
        type="member.role_changed",
        actor=actor_for_user(actor),
        data={"user": membership.user.email, "from": old, "to": new_role.value},
    )
    return membership


@transaction.atomic
def member_remove(*, org: Organization, actor: User, membership: Membership) -> None:
    leaving_self = membership.user_id == actor.pk
    if not leaving_self:
        actor_role = _check(org, actor, Action.MEMBERS_MANAGE)
        if membership.role == Role.OWNER and actor_role != Role.OWNER:
            raise PermissionDenied(Action.ORG_DELETE, actor_role)
    membership = Membership.objects.select_for_update().get(pk=membership.pk, org=org)
    if membership.role == Role.OWNER and _owner_count(org) <= 1:
        raise ServiceError(
            "An organisation keeps at least one owner: make someone else owner first.",
            code="last_owner",
        )
    emit(
        org_id=org.id,
        type="member.removed",
        actor=actor_for_user(actor),
        data={"user": membership.user.email, "role": membership.role},
    )
    membership.delete()


@transaction.atomic
def invitation_create(
    *, org: Organization, actor: User, email: str, role: str, accept_url_base: str | None = None
) -> tuple[Invitation, str]:
    actor_role = _check(org, actor, Action.MEMBERS_MANAGE)
    new_role = _valid_role(role)
    if new_role == Role.OWNER and actor_role != Role.OWNER:
        raise PermissionDenied(Action.ORG_DELETE, actor_role)
    email = (email or "").strip().lower()
    invitation = Invitation(
        org=org,
        email=email,
        role=new_role,
        invited_by=actor,
        expires_at=timezone.now() + timedelta(days=settings.IGRIS_INVITATION_DAYS),
        token_hash="pending",
    )
    _clean(invitation, exclude=["token_hash", "org"])
    if Membership.objects.filter(org=org, user__email__iexact=email).exists():
        raise ServiceError(
            f"{email} is already a member of {org.name}.", field="email", code="already_member"
        )
    if Invitation.objects.filter(
        org=org,
        email__iexact=email,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).exists():
        raise ServiceError(
            f"{email} already has an open invitation; revoke it to send a new one.",
            field="email",
            code="already_invited",
        )
    # An expired, never-used invitation for the same address is closed so a new one can be sent.
    Invitation.objects.filter(
        org=org, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    token = secrets.token_urlsafe(32)
    invitation.token_hash = crypto.hash_token(token)
    invitation.save()
    emit(
        org_id=org.id,
        type="invitation.created",
        actor=actor_for_user(actor),
        data={"email": email, "role": new_role.value, "invitation_id": str(invitation.id)},
    )
    base = accept_url_base or settings.IGRIS_PUBLIC_URL
    link = f"{base.rstrip('/')}/invitations/{token}/"
    transaction.on_commit(
        lambda: send_mail(
            subject=f"[igris] {actor.email} invited you to {org.name}",
            message=(
                f"{actor.email} invited you to join {org.name} on igris as {new_role.value}.\n\n"
                f"Accept the invitation: {link}\n\nThe link expires on "
                f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[email],
            fail_silently=True,
        )
    )
    return invitation, token


def invitation_by_token(*, token: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("org", "invited_by")
        .filter(token_hash=crypto.hash_token(token or ""))
        .first()
    )


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    invitation = invitation_by_token(token=token)
    if invitation is None:
        raise ServiceError("This invitation link is not valid.", code="invalid_invitation")
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.revoked_at is not None:
        raise ServiceError("This invitation was revoked.", code="invitation_revoked")
    if invitation.accepted_at is not None:
        raise ServiceError("This invitation was already used.", code="invitation_used")
    if invitation.is_expired:
        raise ServiceError(
            "This invitation has expired: ask for a new one.", code="invitation_expired"
        )
    if invitation.email.lower() != user.email.lower():
        raise ServiceError(
            f"This invitation is for {invitation.email}; sign in with that address.",
            code="invitation_email_mismatch",
        )
    if Membership.objects.filter(org=invitation.org, user=user).exists():
        raise ServiceError(
            f"You are already a member of {invitation.org.name}.", code="already_member"
        )
    membership = Membership.objects.create(org=invitation.org, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    emit(
        org_id=invitation.org_id,
        type="invitation.accepted",
        actor=actor_for_user(user),
        data={"email": user.email, "role": invitation.role, "invitation_id": str(invitation.id)},
    )
    return membership


@transaction.atomic
def invitation_revoke(*, org: Organization, actor: User, invitation: Invitation) -> Invitation:
    _check(org, actor, Action.MEMBERS_MANAGE)
    if not invitation.is_open:
        raise ServiceError("This invitation is no longer open.", code="invitation_closed")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    emit(
        org_id=org.id,
        type="invitation.revoked",
        actor=actor_for_user(actor),
        data={"email": invitation.email, "invitation_id": str(invitation.id)},
    )
    return invitation
