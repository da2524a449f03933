"""Anomalies: recording what the proxy or ingestion detected, and triage from the console.

`anomaly_record` stores an anomaly whose audit event is already durable, and may suspend the
session. An anomaly then moves open -> acknowledged -> resolved (or straight from open to
resolved); each move is one service that checks the role, locks the row and records its own
audit event.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from governance.events import SYSTEM, actor_for_user, emit
from governance.models import AgentSession, Anomaly, AnomalyStatus, Organization, SessionState, User
from governance.permissions import Action
from governance.runtime import flags
from governance.services.base import ServiceError, _check

__all__ = ["anomaly_acknowledge", "anomaly_record", "anomaly_resolve"]

MAX_NOTE = 2000


@transaction.atomic
def anomaly_record(
    *,
    org_id: Any,
    session_id: str | None,
    server_slug: str,
    kind: str,
    severity: str,
    tool: str | None,
    detail: dict[str, Any],
    event_id: Any,
    auto_suspend: bool,
) -> Anomaly | None:
    """Store an anomaly the proxy detected (its audit event is already durable)."""
    if Anomaly.objects.filter(event_id=event_id).exists():
        return None
    session = (
        AgentSession.objects.filter(pk=session_id, org_id=org_id).first() if session_id else None
    )
    anomaly = Anomaly.objects.create(
        org_id=org_id,
        session=session,
        server_slug=server_slug,
        kind=kind,
        severity=severity,
        tool=(tool or "")[:200],
        detail=detail,
        event_id=event_id,
    )
    if auto_suspend and session_id:
        reason = f"automatic: {kind}"
        AgentSession.objects.filter(pk=session_id, org_id=org_id, state=SessionState.ACTIVE).update(
            state=SessionState.SUSPENDED, state_reason=reason
        )
        emit(
            org_id=org_id,
            type="session.suspended",
            actor=SYSTEM,
            source="proxy",
            data={"session_id": session_id, "reason": reason, "anomaly_id": anomaly.pk},
        )
        from governance.runtime.hotstate.sync import publish_flag_sync

        # A 2026-07-28-era session is stopped on its slot (governance.runtime.flags).
        slot = session.slot if session is not None else ""
        key = flags.kill_slot(slot) if slot else flags.kill_session(session_id)
        transaction.on_commit(lambda: publish_flag_sync(key, f"suspended:{reason}"))
    return anomaly


def _locked(org: Organization, anomaly: Anomaly) -> Anomaly:
    locked = Anomaly.objects.select_for_update().filter(pk=anomaly.pk, org=org).first()
    if locked is None:
        raise ServiceError("No such anomaly in this organisation.", code="not_found")
    return locked


def _event_data(anomaly: Anomaly) -> dict[str, object]:
    return {
        "anomaly_id": anomaly.pk,
        "kind": anomaly.kind,
        "severity": anomaly.severity,
        "session_id": anomaly.session_id,
        "server": anomaly.server_slug,
        "tool": anomaly.tool,
    }


@transaction.atomic
def anomaly_acknowledge(*, org: Organization, actor: User, anomaly: Anomaly) -> Anomaly:
    """Someone is looking at it: open -> acknowledged."""
    _check(org, actor, Action.ANOMALIES_MANAGE)
    anomaly = _locked(org, anomaly)
    if anomaly.status != AnomalyStatus.OPEN:
        raise ServiceError(
            f"Only an open anomaly can be acknowledged (this one is {anomaly.status}).",
            code="not_open",
        )
    anomaly.status = AnomalyStatus.ACKNOWLEDGED
    anomaly.save(update_fields=["status"])
    emit(
        org_id=org.id,
        type="anomaly.acknowledged",
        actor=actor_for_user(actor),
        data=_event_data(anomaly),
    )
    return anomaly


@transaction.atomic
def anomaly_resolve(*, org: Organization, actor: User, anomaly: Anomaly, note: str) -> Anomaly:
    """Close an open or acknowledged anomaly, saying what was found or done."""
    _check(org, actor, Action.ANOMALIES_MANAGE)
    note = (note or "").strip()
    if not note:
        raise ServiceError("Say what was found or done before resolving.", field="note")
    if len(note) > MAX_NOTE:
        raise ServiceError(f"Keep the note under {MAX_NOTE} characters.", field="note")
    anomaly = _locked(org, anomaly)
    if anomaly.status == AnomalyStatus.RESOLVED:
        raise ServiceError("This anomaly is already resolved.", code="already_resolved")
    anomaly.status = AnomalyStatus.RESOLVED
    anomaly.note = note
    anomaly.resolved_by = actor
    anomaly.save(update_fields=["status", "note", "resolved_by"])
    emit(
        org_id=org.id,
        type="anomaly.resolved",
        actor=actor_for_user(actor),
        data={**_event_data(anomaly), "note": note},
    )
    return anomaly
