"""Ingested batches (`/api/v1/ingest/<provider>`): outside records stored as audit events.

A batch is stored through the audit pipeline like any state change: one envelope per accepted item
in the `PendingEvent` outbox, all in one transaction, so the audit writer gives them their `seq`
and hash chain. Envelope ids are derived from the provider's own record ids (or from the request's
Idempotency-Key) when there are any, so a redelivered record is stored once: the audit writer skips
envelope ids it already holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.core.cache import cache
from django.db import transaction

from compliance.ingest import PROVIDERS
from compliance.ingest.items import IngestItem
from governance.destructive import is_destructive_name
from governance.events import Actor, Envelope
from governance.keys import VerifiedKey
from governance.models import IngestSource, PendingEvent
from governance.services.anomalies import anomaly_record
from governance.services.base import ServiceError

__all__ = ["ingest_batch"]

# uuid5 namespace of ingested envelope ids (provider record ids, idempotency keys).
EVENT_NAMESPACE = uuid.UUID("2b7d8f0e-51a4-5f3c-8e9b-4c1d6a0f7e35")
# At most one destructive-pattern anomaly per session and cooldown, as the proxy does.
ANOMALY_COOLDOWN_S = 300
ANOMALY_KIND = "destructive_pattern"


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
