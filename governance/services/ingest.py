"""Ingestion sources and ingested batches (`/api/v1/ingest/<provider>`).

A batch is stored through the audit pipeline like any state change: one envelope per accepted item
in the `PendingEvent` outbox, all in one transaction, so the audit writer gives them their `seq`
and hash chain. Envelope ids are derived from the provider's own record ids (or from the request's
Idempotency-Key) when there are any, so a redelivered record is stored once: the audit writer skips
envelope ids it already holds.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from governance import crypto
from governance.events import Actor, Envelope, actor_for_user, emit
from governance.ingest import PROVIDERS, is_destructive_name
from governance.ingest.items import IngestItem
from governance.keys import VerifiedKey
from governance.models import IngestProvider, IngestSource, Organization, PendingEvent, User
from governance.permissions import Action, PermissionDenied, role_can
from governance.services.core import ServiceError, _check, _clean
from governance.services.tools import anomaly_record

__all__ = [
    "ingest_batch",
    "ingest_source_create",
    "ingest_source_delete",
    "ingest_source_rotate",
    "ingest_source_secret",
]

SECRET_PREFIX = "igs_"
# uuid5 namespace of ingested envelope ids (provider record ids, idempotency keys).
EVENT_NAMESPACE = uuid.UUID("2b7d8f0e-51a4-5f3c-8e9b-4c1d6a0f7e35")
# At most one destructive-pattern anomaly per session and cooldown, as the proxy does.
ANOMALY_COOLDOWN_S = 300
ANOMALY_KIND = "destructive_pattern"


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


# --- batches ------------------------------------------------------------------------------------


def _origin(
    source_or_key: IngestSource | VerifiedKey,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(org id, provenance recorded in every envelope, actor when the item names none)."""
    if isinstance(source_or_key, IngestSource):
        source = source_or_key
        provenance = {"via": "signature", "source_id": str(source.id), "source": source.name}
        actor = {"kind": "ingest_source", "id": str(source.id), "label": source.name}
        return str(source.org_id), provenance, actor
    key = source_or_key
    provenance = {"via": "api_key", "key_id": key.id, "key": key.name}
    return key.org_id, provenance, {"kind": "api_key", "id": key.id, "label": key.name}


def _event_id(
    org_id: str, provider: str, item: IngestItem, batch_key: str | None, index: int
) -> str:
    if item.external_id:
        return str(uuid.uuid5(EVENT_NAMESPACE, f"{org_id}|{provider}|{item.external_id}"))
    if batch_key:
        return str(uuid.uuid5(EVENT_NAMESPACE, f"{org_id}|{batch_key}|{index}"))
    return str(uuid.uuid4())


@transaction.atomic
def ingest_batch(
    *,
    source_or_key: IngestSource | VerifiedKey,
    provider: str,
    items: Sequence[IngestItem],
    batch_key: str | None = None,
) -> list[str]:
    """Store the accepted items of one request, all or none; returns their envelope ids.

    `source_or_key` is what authenticated the request: it names the organisation and is recorded
    as provenance (`data.ingest`). `batch_key` (credential and Idempotency-Key) makes the ids of
    items without a provider id repeatable. A tool name matching the destructive pattern records a
    `destructive_pattern` anomaly (never suspends a session: the sender is not trusted to).
    """
    if provider not in PROVIDERS:
        raise ServiceError(f"Unknown provider '{provider}'.", code="unknown_provider")
    if isinstance(source_or_key, IngestSource) and source_or_key.provider != provider:
        raise ServiceError(
            f"This source sends {source_or_key.provider} events, not {provider}.",
            code="provider_mismatch",
        )
    org_id, provenance, default_actor = _origin(source_or_key)
    source = f"ingest:{provider}"
    envelopes: list[Envelope] = []
    for index, item in enumerate(items):
        ingest = {"provider": provider, **provenance}
        if item.external_id:
            ingest["external_id"] = item.external_id
        envelope = Envelope(
            org_id=org_id,
            type=item.type,
            source=source,
            actor=_actor(item.actor or default_actor),
            data={**item.data, "ingest": ingest},
            id=_event_id(org_id, provider, item, batch_key, index),
            ts=item.ts.isoformat(timespec="microseconds"),
        )
        envelopes.append(envelope)
    held: list[str] = []
    try:
        anomalies = _destructive_anomalies(org_id, source, provenance, envelopes, held)
        PendingEvent.objects.bulk_create(
            [PendingEvent(org_id=org_id, payload=e.as_dict()) for e in [*envelopes, *anomalies]]
        )
    except BaseException:
        cache.delete_many(held)  # nothing was recorded: the cooldowns taken do not apply
        raise
    return [e.id for e in envelopes]


def _actor(values: dict[str, Any]) -> Actor:
    return Actor(kind=values["kind"], id=values.get("id"), label=values.get("label"))


def _destructive_anomalies(
    org_id: str,
    source: str,
    provenance: dict[str, Any],
    envelopes: list[Envelope],
    held: list[str],
) -> list[Envelope]:
    """One `destructive_pattern` anomaly (audit event + Anomaly row) per session of the batch
    whose items name a destructive tool, unless that session had one in the cooldown."""
    by_session: dict[str | None, list[tuple[Envelope, list[str]]]] = {}
    for envelope in envelopes:
        named = [envelope.data.get("tool"), *(envelope.data.get("tool_calls") or [])]
        hits = [name for name in named if is_destructive_name(name)]
        if hits:
            by_session.setdefault(envelope.data.get("session_id"), []).append((envelope, hits))
    out: list[Envelope] = []
    for session_id, group in by_session.items():
        cooldown = f"ingest:anomaly-cooldown:{org_id}:{session_id or '-'}:{ANOMALY_KIND}"
        if not cache.add(cooldown, "1", ANOMALY_COOLDOWN_S):
            continue
        held.append(cooldown)
        first, _ = group[0]
        tools = list(dict.fromkeys(name for _, hits in group for name in hits))
        requested = first.data.get("tool") not in tools
        detail = {
            "kind": ANOMALY_KIND,
            "severity": "high",
            "message": (
                f"a model asked for the destructive tool '{tools[0]}'"
                if requested
                else f"destructive tool '{tools[0]}' was called"
            ),
            "tools": tools[:20],
            "event_ids": [envelope.id for envelope, _ in group][:20],
            "count": len(group),
            "source": source,
        }
        anomaly = Envelope(
            org_id=org_id,
            type="anomaly",
            source=source,
            actor=_actor(first.actor.as_dict()),
            data={
                **detail,
                "tool": tools[0],
                **({"session_id": session_id} if session_id else {}),
                **(
                    {"server_slug": first.data["server_slug"]}
                    if first.data.get("server_slug")
                    else {}
                ),
                "decision": "observed",
                "result": "anomaly",
                "ingest": provenance,
            },
            id=str(uuid.uuid5(uuid.UUID(first.id), ANOMALY_KIND)),
        )
        out.append(anomaly)
        anomaly_record(
            org_id=org_id,
            session_id=session_id,
            server_slug=first.data.get("server_slug") or "",
            kind=ANOMALY_KIND,
            severity="high",
            tool=tools[0],
            detail=detail,
            event_id=anomaly.id,
            auto_suspend=False,
        )
    return out
