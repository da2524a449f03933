"""Periodic compliance work, run by the Celery beat schedule (settings.CELERY_BEAT_SCHEDULE).

- `sign_checkpoints` signs every chain head that moved since its organisation's last checkpoint,
  so a truncated tail is detectable (compliance/audit/verify.py) without waiting for an operator.
- `verify_chains` re-verifies every chain; a break is logged and recorded as an
  `audit.chain_broken` event in that organisation's audit log and live feed.

Both are idempotent: a retry after a crash signs or checks again, nothing is half-written.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db.models import Max

from compliance.audit.verify import organizations_with_audit_data, verify_chain
from compliance.models import AuditEvent, ChainHead, Checkpoint
from compliance.services import ChainHeadMismatch, checkpoint_create
from governance.events import SYSTEM, emit

log = logging.getLogger("igris.compliance")

CHECKPOINT_EVENT = "audit.checkpoint_created"


def heads_needing_checkpoint() -> list[Any]:
    """Organisations whose chain holds events after their newest checkpoint, other than the
    `audit.checkpoint_created` event that checkpoint itself caused."""
    last_signed = dict(
        Checkpoint.objects.values("org_id").annotate(seq=Max("seq")).values_list("org_id", "seq")
    )
    due = []
    for org_id, head_seq in ChainHead.objects.filter(seq__gt=0).values_list("org_id", "seq"):
        signed = last_signed.get(org_id, 0)
        if head_seq <= signed:
            continue
        moved = (
            AuditEvent.objects.filter(org_id=org_id, seq__gt=signed)
            .exclude(type=CHECKPOINT_EVENT)
            .exists()
        )
        if moved:
            due.append(org_id)
    return due


@shared_task(name="compliance.sign_checkpoints", acks_late=True)
def sign_checkpoints() -> dict[str, int]:
    signed = skipped = 0
    for org_id in heads_needing_checkpoint():
        try:
            checkpoint_create(org_id=org_id)
            signed += 1
        except ChainHeadMismatch:
            # Never sign a head its event does not carry; verify_chains reports the break.
            log.error("audit checkpoint skipped: chain head of %s does not match", org_id)
            skipped += 1
    if signed or skipped:
        log.info("audit checkpoints signed=%d skipped=%d", signed, skipped)
    return {"signed": signed, "skipped": skipped}


@shared_task(name="compliance.verify_chains", acks_late=True)
def verify_chains() -> dict[str, int]:
    checked = broken = 0
    for org_id in organizations_with_audit_data():
        result = verify_chain(org_id)
        checked += 1
        if result.first_break is None:
            continue
        broken += 1
        fault = result.first_break.as_dict()
        log.error("audit chain of %s is broken: %s", org_id, fault)
        emit(
            org_id=org_id,
            type="audit.chain_broken",
            actor=SYSTEM,
            source="system",
            data={"first_break": fault, "verified_before_break": result.checked},
        )
    return {"checked": checked, "broken": broken}
