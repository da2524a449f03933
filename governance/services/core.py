"""State changes of the governance core. One service per change; each records its own event.

Services are keyword-only, atomic, check the actor's role through `governance.permissions`, call
`full_clean()` before saving and raise `ServiceError` (a clear, user-facing message) on bad input.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from governance import crypto
from governance.events import actor_for_user, emit
from governance.models import (
    ApiKey,
    Invitation,
    McpServer,
    Membership,
    Organization,
    Scope,
    UpstreamAuth,
    User,
)
from governance.permissions import Action, PermissionDenied, Role, require, role_can
from governance.selectors import role_of, server_circuits

__all__ = [
    "ServiceError",
    "api_key_create",
    "api_key_revoke",
    "invitation_accept",
    "invitation_by_token",
    "invitation_create",
    "invitation_revoke",
    "member_change_role",
    "member_remove",
    "organization_create",
    "organization_delete",
    "organization_update",
    "server_circuit_reset",
    "server_create",
    "server_delete",
    "server_update",
]


class ServiceError(Exception):
    """Bad input or a broken invariant; the message is safe to show to the user."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


def _check(org: Organization, actor: Any, action: Action) -> str:
    role = role_of(org=org, user=actor)
    if (
        role is None
        and getattr(actor, "is_superuser", False)
        and getattr(actor, "is_active", False)
    ):
        # Platform operators (Django superusers, through the admin) act as owners of any
        # organisation; every such change is still audited under their own identity.
        return Role.OWNER
    require(role, action)
    assert role is not None
    return role


def _clean(obj: Any, exclude: Sequence[str] = ()) -> None:
    try:
        obj.full_clean(exclude=list(exclude))
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ServiceError(f"{field}: {' '.join(messages)}", field=field) from exc


# --- organisations ---------------------------------------------------------------------------


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
        from governance.hotstate.sync import publish_flag_sync
        from governance.runtime_flags import policy_changed, server_changed

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


# --- members and invitations ---------------------------------------------------------------------


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


# --- API keys ---------------------------------------------------------------------------------


def _validate_scopes(scopes: Iterable[str]) -> list[str]:
    scopes = list(dict.fromkeys(scopes))
    if not scopes:
        raise ServiceError("Choose at least one scope.", field="scopes")
    valid = set(Scope.values)
    bad = [s for s in scopes if s not in valid]
    if bad:
        raise ServiceError(
            f"Unknown scope(s): {', '.join(bad)}; use {', '.join(Scope.values)}.", field="scopes"
        )
    return scopes


@transaction.atomic
def api_key_create(
    *,
    org: Organization,
    actor: User,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    allowed_server_ids: Iterable[Any] = (),
    tags: Iterable[str] = (),
) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned once and never stored."""
    role = _check(org, actor, Action.KEYS_MANAGE_OWN)
    scope_list = _validate_scopes(scopes)
    if Scope.ADMIN in scope_list and not role_can(role, Action.KEYS_MANAGE_ALL):
        raise PermissionDenied(Action.KEYS_MANAGE_ALL, role)
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("The expiry must be in the future.", field="expires_at")
    server_ids = list(allowed_server_ids)
    servers = list(McpServer.objects.filter(org=org, pk__in=server_ids)) if server_ids else []
    if len(servers) != len(set(map(str, server_ids))):
        raise ServiceError(
            "Some allowed servers do not exist in this organisation.", field="allowed_servers"
        )
    generated = crypto.generate_api_key()
    key = ApiKey(
        org=org,
        name=(name or "").strip(),
        prefix=generated.prefix,
        salt=generated.salt,
        secret_hash=generated.secret_hash,
        scopes=scope_list,
        tags=[t.strip() for t in tags if t.strip()],
        created_by=actor,
        expires_at=expires_at,
    )
    _clean(key)
    key.save()
    if servers:
        key.allowed_servers.set(servers)
    emit(
        org_id=org.id,
        type="api_key.created",
        actor=actor_for_user(actor),
        data={
            "key_id": str(key.id),
            "name": key.name,
            "prefix": key.prefix,
            "scopes": scope_list,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "allowed_servers": [s.slug for s in servers],
        },
    )
    return key, generated.plaintext


@transaction.atomic
def api_key_revoke(*, org: Organization, actor: User, key: ApiKey) -> ApiKey:
    role = _check(org, actor, Action.KEYS_MANAGE_OWN)
    if key.created_by_id != actor.pk and not role_can(role, Action.KEYS_MANAGE_ALL):
        raise PermissionDenied(Action.KEYS_MANAGE_ALL, role)
    key = ApiKey.objects.select_for_update().get(pk=key.pk, org=org)
    if key.revoked_at is not None:
        raise ServiceError("This key is already revoked.", code="already_revoked")
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    emit(
        org_id=org.id,
        type="api_key.revoked",
        actor=actor_for_user(actor),
        data={"key_id": str(key.id), "name": key.name, "prefix": key.prefix},
    )
    prefix = key.prefix
    transaction.on_commit(lambda: _announce_key_change(prefix))
    return key


def _announce_server_change(org_id: Any) -> None:
    from governance.hotstate.sync import publish_flag_sync
    from governance.runtime_flags import server_changed

    org_key = str(org_id)
    transaction.on_commit(
        lambda: publish_flag_sync(
            server_changed(org_key), str(timezone.now().timestamp()), ttl_s=3600
        )
    )


def _announce_key_change(prefix: str) -> None:
    """Tell every process to drop its cached copy of this key (DESIGN.md §4: flags + notify)."""
    from governance.keys import announce_key_change

    announce_key_change(prefix)


# --- MCP servers -------------------------------------------------------------------------------

SERVER_FIELDS = (
    "name",
    "slug",
    "description",
    "upstream_url",
    "auth_type",
    "auth_header_name",
    "connect_timeout_s",
    "total_timeout_s",
    "enabled",
)


def _apply_credential(server: McpServer, credential: str | None) -> None:
    if credential is None:
        return
    server.credential_encrypted = (
        crypto.encrypt(credential, context=str(server.id)) if credential else None
    )


def _check_upstream(server: McpServer) -> None:
    from governance.ssrf import UnsafeUpstream, check_upstream_url

    try:
        check_upstream_url(
            server.upstream_url, allow_link_local=settings.IGRIS_UPSTREAM_ALLOW_LINK_LOCAL
        )
    except UnsafeUpstream as exc:
        raise ServiceError(str(exc), field="upstream_url", code="unsafe_upstream") from None


def _check_auth_config(server: McpServer) -> None:
    if server.auth_type == UpstreamAuth.HEADER and not server.auth_header_name:
        raise ServiceError("Name the header that carries the credential.", field="auth_header_name")
    if server.auth_type != UpstreamAuth.NONE and not server.credential_encrypted:
        raise ServiceError("This authentication type needs a credential.", field="credential")


@transaction.atomic
def server_create(
    *, org: Organization, actor: User, credential: str | None = None, **fields: Any
) -> McpServer:
    _check(org, actor, Action.SERVERS_MANAGE)
    unknown = set(fields) - set(SERVER_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    server = McpServer(org=org, created_by=actor, **fields)
    if McpServer.objects.filter(org=org, slug=server.slug).exists():
        raise ServiceError(
            f"A server with slug '{server.slug}' exists already.", field="slug", code="conflict"
        )
    _apply_credential(server, credential)
    _clean(server)
    _check_upstream(server)
    _check_auth_config(server)
    server.save()
    emit(
        org_id=org.id,
        type="server.created",
        actor=actor_for_user(actor),
        data={
            "server_id": str(server.id),
            "slug": server.slug,
            "upstream_url": server.upstream_url,
            "auth_type": server.auth_type,
        },
    )
    _announce_server_change(org.id)
    return server


@transaction.atomic
def server_update(
    *,
    org: Organization,
    actor: User,
    server: McpServer,
    credential: str | None = None,
    **changes: Any,
) -> McpServer:
    _check(org, actor, Action.SERVERS_MANAGE)
    unknown = set(changes) - set(SERVER_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    server = McpServer.objects.select_for_update().get(pk=server.pk, org=org)
    before = {k: getattr(server, k) for k in changes}
    for key, value in changes.items():
        setattr(server, key, value)
    if (
        "slug" in changes
        and McpServer.objects.filter(org=org, slug=server.slug).exclude(pk=server.pk).exists()
    ):
        raise ServiceError(
            f"A server with slug '{server.slug}' exists already.", field="slug", code="conflict"
        )
    _apply_credential(server, credential)
    _clean(server)
    _check_upstream(server)
    _check_auth_config(server)
    server.save()
    diff = {
        k: {"from": before[k], "to": getattr(server, k)}
        for k in changes
        if before[k] != getattr(server, k)
    }
    if credential is not None:
        diff["credential"] = {"from": "***", "to": "***" if credential else None}
    emit(
        org_id=org.id,
        type="server.updated",
        actor=actor_for_user(actor),
        data={"server_id": str(server.id), "slug": server.slug, "changes": diff},
    )
    _announce_server_change(org.id)
    return server


@transaction.atomic
def server_circuit_reset(*, org: Organization, actor: User, server: McpServer) -> None:
    """Close an open circuit breaker by hand: every proxy process forwards to the server again
    at once (the breaker opens anew if the upstream keeps failing)."""
    from governance.hotstate.sync import publish_flag_sync
    from governance.runtime_flags import CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, circuit, circuit_trial

    _check(org, actor, Action.SERVERS_MANAGE)
    state = server_circuits(server_ids=[server.id])[str(server.id)]
    if state.state not in (CIRCUIT_OPEN, CIRCUIT_HALF_OPEN):
        raise ServiceError(
            f"The circuit breaker of {server.name} is not open ({state.state}).", code="not_open"
        )
    emit(
        org_id=org.id,
        type="server.circuit_reset",
        actor=actor_for_user(actor),
        data={
            "server_id": str(server.id),
            "slug": server.slug,
            "state": state.state,
            "failures": state.failures,
            "last_error": state.last_error,
        },
    )
    server_key = str(server.id)
    transaction.on_commit(lambda: publish_flag_sync(circuit(server_key), None))
    transaction.on_commit(lambda: publish_flag_sync(circuit_trial(server_key), None))


@transaction.atomic
def server_delete(*, org: Organization, actor: User, server: McpServer) -> None:
    _check(org, actor, Action.SERVERS_MANAGE)
    emit(
        org_id=org.id,
        type="server.deleted",
        actor=actor_for_user(actor),
        data={"server_id": str(server.id), "slug": server.slug},
    )
    server.delete()
    _announce_server_change(org.id)
