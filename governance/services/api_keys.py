"""API key services: create (the plaintext is shown once) and revoke. Each records its own event."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance import crypto
from governance.events import actor_for_user, emit
from governance.models import ApiKey, McpServer, Organization, Scope, User
from governance.permissions import Action, PermissionDenied, role_can
from governance.services.base import ServiceError, _check, _clean

__all__ = ["api_key_create", "api_key_revoke"]


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
    # A process may have looked this prefix up before the row committed (a key printed or
    # written to a file before its transaction ended) and cached "no such key": evict that on
    # commit, here and in every other process, so the new key works at once.
    prefix = key.prefix
    transaction.on_commit(lambda: _announce_key_change(prefix))
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


def _announce_key_change(prefix: str) -> None:
    """Tell every process to drop its cached copy of this key (DESIGN.md §4: flags + notify)."""
    from governance.keys import announce_key_change

    announce_key_change(prefix)
