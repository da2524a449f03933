"""Members, organisations and invitations."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from governance.models import Invitation, Membership, Organization, User


def membership_get(*, org: Organization, user: Any) -> Membership | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(org=org, user=user).first()


def role_of(*, org: Organization, user: Any) -> str | None:
    membership = membership_get(org=org, user=user)
    return membership.role if membership else None


def organizations_for_user(*, user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(memberships__user=user).order_by("name")


def members_for_org(*, org: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(org=org).select_related("user").order_by("created_at")


def member_get_for_org(*, org: Organization, membership_id: Any) -> Membership:
    try:
        return Membership.objects.select_related("user").get(org=org, pk=int(membership_id))
    except (Membership.DoesNotExist, ValueError, TypeError):
        raise Http404("no such member in this organisation") from None


def invitations_open_for_org(*, org: Organization) -> QuerySet[Invitation]:
    return (
        Invitation.objects.filter(org=org, accepted_at__isnull=True, revoked_at__isnull=True)
        .select_related("invited_by")
        .order_by("-created_at")
    )


def invitation_get_for_org(*, org: Organization, invitation_id: Any) -> Invitation:
    try:
        return Invitation.objects.get(org=org, pk=invitation_id)
    except (Invitation.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("no such invitation in this organisation") from None
