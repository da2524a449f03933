"""Ingest sources: the other gateways allowed to send their events, each with a signing secret.

A source is a tenant resource like an API key (same roles manage it). What a source sends is
turned into audit events by `compliance.ingest`; the signature scheme its secret signs with is
`governance.ingest_signing`.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance import crypto
from governance.events import actor_for_user, emit
from governance.models import IngestProvider, IngestSource, Organization, User
from governance.permissions import Action, PermissionDenied, role_can
from governance.services.base import ServiceError, _check, _clean

__all__ = [
    "ingest_source_create",
    "ingest_source_delete",
    "ingest_source_rotate",
    "ingest_source_secret",
]

SECRET_PREFIX = "igs_"


def _secret_context(source_id: Any) -> str:
    # Bound as AES-GCM associated data: a ciphertext copied to another source does not decrypt.
    return f"ingest-source:{source_id}"


def _new_secret(source: IngestSource) -> str:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    source.secret_encrypted = crypto.encrypt(secret, context=_secret_context(source.id))
    return secret


def ingest_source_secret(source: IngestSource) -> str:
    """The signing secret in clear, to check a signature (never shown after creation)."""
    return crypto.decrypt(bytes(source.secret_encrypted), context=_secret_context(source.id))


@transaction.atomic
def ingest_source_create(
    *, org: Organization, actor: User, name: str, provider: str
) -> tuple[IngestSource, str]:
    """Create a source; its signing secret is returned once and stored only encrypted."""
    _check(org, actor, Action.KEYS_MANAGE_OWN)
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the source a name.", field="name")
    if provider not in IngestProvider.values:
        raise ServiceError(
            f"Unknown provider '{provider}'; use {', '.join(IngestProvider.values)}.",
            field="provider",
        )
    if IngestSource.objects.filter(org=org, name=name).exists():
        raise ServiceError(
            f"A source named '{name}' exists already.", field="name", code="conflict"
        )
    source = IngestSource(org=org, name=name, provider=provider, created_by=actor)
    secret = _new_secret(source)
    _clean(source)
    source.save()
    emit(
        org_id=org.id,
        type="ingest_source.created",
        actor=actor_for_user(actor),
        data={"source_id": str(source.id), "name": source.name, "provider": provider},
    )
    return source, secret


def _check_manage(org: Organization, actor: User, source: IngestSource) -> None:
    """A source's creator may manage it with KEYS_MANAGE_OWN; anyone else needs KEYS_MANAGE_ALL."""
    role = _check(org, actor, Action.KEYS_MANAGE_OWN)
    if source.created_by_id != actor.pk and not role_can(role, Action.KEYS_MANAGE_ALL):
        raise PermissionDenied(Action.KEYS_MANAGE_ALL, role)


@transaction.atomic
def ingest_source_rotate(
    *, org: Organization, actor: User, source: IngestSource
) -> tuple[IngestSource, str]:
    """Replace the signing secret; the old one stops working at once. Returns the new one."""
    _check_manage(org, actor, source)
    source = IngestSource.objects.select_for_update().get(pk=source.pk, org=org)
    secret = _new_secret(source)
    source.rotated_at = timezone.now()
    source.save(update_fields=["secret_encrypted", "rotated_at"])
    emit(
        org_id=org.id,
        type="ingest_source.rotated",
        actor=actor_for_user(actor),
        data={"source_id": str(source.id), "name": source.name},
    )
    return source, secret


@transaction.atomic
def ingest_source_delete(*, org: Organization, actor: User, source: IngestSource) -> None:
    """Remove a source: its signature stops being accepted at once. What it sent stays in the
    audit log (those events name the source id)."""
    _check_manage(org, actor, source)
    source = IngestSource.objects.select_for_update().get(pk=source.pk, org=org)
    emit(
        org_id=org.id,
        type="ingest_source.deleted",
        actor=actor_for_user(actor),
        data={"source_id": str(source.id), "name": source.name, "provider": source.provider},
    )
    source.delete()
