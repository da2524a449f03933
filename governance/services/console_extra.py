"""Anomaly triage from the console: acknowledge, resolve with a note.

An anomaly moves open -> acknowledged -> resolved (or straight from open to resolved); each move
is one service that checks the role, locks the row and records its own audit event.
"""

from __future__ import annotations

from django.db import transaction

from governance.events import actor_for_user, emit
from governance.models import Anomaly, AnomalyStatus, Organization, User
from governance.permissions import Action
from governance.services.core import ServiceError, _check

__all__ = ["anomaly_acknowledge", "anomaly_resolve"]

MAX_NOTE = 2000


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
