"""Organisation services: create, update settings, delete. Each records its own event."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from governance.events import actor_for_user, emit
from governance.models import Membership, Organization, User
from governance.permissions import Action, Role
from governance.services.base import ServiceError, _check, _clean

__all__ = [
    "organization_create",
    "organization_delete",
    "organization_update",
]


def _unique_org_slug(name: str) -> str:
    base = (slugify(name)[:50] or "org").strip("-_")
    if len(base) < 3:
        base = f"{base}-org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(*, name: str, owner: User, slug: str | None = None) -> Organization:
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the organisation a name.", field="name")
    org = Organization(name=name, slug=slug or _unique_org_slug(name))
    if slug and Organization.objects.filter(slug=slug).exists():
        raise ServiceError(f"The slug '{slug}' is taken.", field="slug", code="conflict")
    _clean(org)
    org.save()
    Membership.objects.create(org=org, user=owner, role=Role.OWNER)
    emit(
        org_id=org.id,
        type="org.created",
        actor=actor_for_user(owner),
        data={"name": org.name, "slug": org.slug},
    )
    return org


ORG_SETTINGS = (
    "name",
    "default_posture",
    "block_drifted_tools",
    "auto_suspend_on_anomaly",
    "audit_retention_days",
    "redact_argument_keys",
)


@transaction.atomic
def organization_update(*, org: Organization, actor: User, **changes: Any) -> Organization:
    _check(org, actor, Action.ORG_UPDATE)
    unknown = set(changes) - set(ORG_SETTINGS)
    if unknown:
        raise ServiceError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    before = {k: getattr(org, k) for k in changes}
    for key, value in changes.items():
        setattr(org, key, value)
    _clean(org)
    org.save()
    diff = {
        k: {"from": before[k], "to": getattr(org, k)}
        for k in changes
        if before[k] != getattr(org, k)
    }
    if diff:
        emit(org_id=org.id, type="org.updated", actor=actor_for_user(actor), data={"changes": diff})
        from governance.runtime.flags import policy_changed, server_changed
        from governance.runtime.hotstate.sync import publish_flag_sync

        org_key = str(org.id)
        stamp = str(timezone.now().timestamp())
        transaction.on_commit(lambda: publish_flag_sync(policy_changed(org_key), stamp, ttl_s=3600))
        transaction.on_commit(lambda: publish_flag_sync(server_changed(org_key), stamp, ttl_s=3600))
    return org


@transaction.atomic
def organization_delete(*, org: Organization, actor: User) -> None:
    _check(org, actor, Action.ORG_DELETE)
    # The audit trail outlives the organisation: audit rows hold plain ids, not foreign keys.
    emit(
        org_id=org.id,
        type="org.deleted",
        actor=actor_for_user(actor),
        data={"name": org.name, "slug": org.slug},
    )
    org.delete()
