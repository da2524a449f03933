"""Compliance writes (CONVENTIONS.md habit 1): one service per state change."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance.audit.chain import (
    GENESIS,
    checkpoint_text,
    public_key_id,
    sign_text,
    signing_key_from_secret,
)
from compliance.models import AuditEvent, ChainHead, Checkpoint
from governance.events import SYSTEM, emit


class ChainHeadMismatch(RuntimeError):
    """The chain head names a hash its event does not carry: verify the chain before signing."""


def checkpoint_signing_key() -> Any:
    # IGRIS_AUDIT_SIGNING_KEY (SECRET_KEY in development): rotating it orphans earlier
    # checkpoints (their key_id no longer matches), so it is kept apart from SECRET_KEY.
    return signing_key_from_secret(settings.IGRIS_AUDIT_SIGNING_KEY)


def checkpoint_create(*, org_id: uuid.UUID | str) -> Checkpoint:
    """Sign the organisation's current chain head (compliance-and-billing.md 4.3, step 5).

    Records an `audit.checkpoint_created` event, which the chain takes after the checkpoint.
    """
    org = uuid.UUID(str(org_id))
    key = checkpoint_signing_key()
    with transaction.atomic():
        head = ChainHead.objects.filter(org_id=org).first()
        seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
        if seq:
            stored = AuditEvent.objects.filter(org_id=org, seq=seq).values_list("hash", flat=True)
            if list(stored) != [head_hash]:
                raise ChainHeadMismatch(f"chain head of {org} at {seq} does not match its event")
        created_at = timezone.now()
        text = checkpoint_text(org_id=org, seq=seq, hash=head_hash, created_at=created_at)
        checkpoint = Checkpoint(
            org_id=org,
            seq=seq,
            hash=head_hash,
            created_at=created_at,
            key_id=public_key_id(key.public_key()),
            signature=sign_text(key, text),
        )
        checkpoint.full_clean()
        checkpoint.save()
        emit(
            org_id=org,
            type="audit.checkpoint_created",
            actor=SYSTEM,
            source="system",
            data={
                "checkpoint_id": checkpoint.id,
                "seq": seq,
                "hash": head_hash,
                "key_id": checkpoint.key_id,
            },
        )
    return checkpoint
