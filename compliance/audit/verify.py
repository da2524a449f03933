"""Verify an organisation's audit chain (compliance-and-billing.md section 4.3, step 4).

Rows are streamed in `seq` order (`iterator(chunk_size=2000)`, a server-side cursor on
PostgreSQL), so memory stays flat whatever the chain's length. For each row: `seq` must follow the
previous one ("gap"), the row's hash must be `link(prev_hash, canonical(row))` ("hash mismatch"),
and its `prev_hash` must be the previous row's hash ("prev_hash mismatch"). The chain must reach
the chain head, and every signed checkpoint must carry a valid signature and the hash the chain
has at its seq ("checkpoint mismatch"): the check that catches a truncated tail whose head was
rewritten, as long as the checkpoint (or a copy kept elsewhere) survives.

The reported `seq` is where the chain first stops being trustworthy: the row that fails, or for a
gap or truncation the first missing seq.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from django.conf import settings

from compliance.audit.chain import (
    GENESIS,
    checkpoint_text,
    event_hash,
    public_key_id,
    signature_valid,
    signing_key_from_secret,
)
from compliance.models import AuditEvent, ChainHead, Checkpoint

Reason = Literal["hash mismatch", "gap", "prev_hash mismatch", "checkpoint mismatch"]
CHUNK_SIZE = 2000


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    reason: Reason
    detail: str = ""

    def as_dict(self) -> dict[str, int | str]:
        return {"seq": self.seq, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    org_id: uuid.UUID
    ok: bool
    checked: int
    first_break: ChainBreak | None
    head_seq: int = 0
    checkpoint_seq: int | None = None


def checkpoint_valid(checkpoint: Checkpoint) -> bool:
    """Whether the checkpoint is signed by this installation's checkpoint key."""
    public_key = signing_key_from_secret(settings.IGRIS_AUDIT_SIGNING_KEY).public_key()
    if checkpoint.key_id != public_key_id(public_key):
        return False
    text = checkpoint_text(
        org_id=checkpoint.org_id,
        seq=checkpoint.seq,
        hash=checkpoint.hash,
        created_at=checkpoint.created_at,
    )
    return signature_valid(public_key, text, checkpoint.signature)


def verify_chain(org_id: uuid.UUID | str, *, chunk_size: int = CHUNK_SIZE) -> VerifyResult:
    org = uuid.UUID(str(org_id))
    # The head is read first: rows the writer commits after this point are left for next time.
    head = ChainHead.objects.filter(org_id=org).first()
    checkpoints = list(Checkpoint.objects.filter(org_id=org).order_by("seq", "id"))
    latest = checkpoints[-1] if checkpoints else None
    head_seq = head.seq if head is not None else None

    def result(checked: int, first_break: ChainBreak | None) -> VerifyResult:
        return VerifyResult(
            org_id=org,
            ok=first_break is None,
            checked=checked,
            first_break=first_break,
            head_seq=head_seq or 0,
            checkpoint_seq=latest.seq if latest else None,
        )

    for checkpoint in checkpoints:
        if not checkpoint_valid(checkpoint):
            detail = f"checkpoint {checkpoint.id} has an invalid signature or unknown key"
            return result(0, ChainBreak(checkpoint.seq, "checkpoint mismatch", detail))
    expected_at: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        expected_at.setdefault(checkpoint.seq, []).append(checkpoint)

    rows = AuditEvent.objects.filter(org_id=org).order_by("seq")
    if head_seq is not None:
        rows = rows.filter(seq__lte=head_seq)
    expected_seq, prev_hash, checked = 1, GENESIS, 0
    for event in rows.iterator(chunk_size=chunk_size):
        if event.seq != expected_seq:
            detail = f"seq {expected_seq} is missing (next stored is {event.seq})"
            return result(checked, ChainBreak(expected_seq, "gap", detail))
        if event_hash(event.chain_dict()) != event.hash:
            return result(checked, ChainBreak(event.seq, "hash mismatch", "row content changed"))
        if event.prev_hash != prev_hash:
            detail = "prev_hash is not the previous event's hash"
            return result(checked, ChainBreak(event.seq, "prev_hash mismatch", detail))
        for checkpoint in expected_at.get(event.seq, ()):
            if checkpoint.hash != event.hash:
                detail = f"checkpoint {checkpoint.id} signed another hash at this seq"
                return result(checked, ChainBreak(event.seq, "checkpoint mismatch", detail))
        checked += 1
        prev_hash = event.hash
        expected_seq += 1

    last = expected_seq - 1
    if head_seq is not None and last < head_seq:
        detail = f"the chain head is at {head_seq} but events end at {last}"
        return result(checked, ChainBreak(last + 1, "gap", detail))
    if head is not None and head.hash != prev_hash:
        detail = "the chain head's hash is not the last event's"
        return result(checked, ChainBreak(last, "hash mismatch", detail))
    for checkpoint in checkpoints:
        if checkpoint.seq > last:
            detail = f"checkpoint {checkpoint.id} is at seq {checkpoint.seq}; events end at {last}"
            return result(checked, ChainBreak(last + 1, "checkpoint mismatch", detail))
        if checkpoint.seq == 0 and checkpoint.hash != GENESIS:
            return result(checked, ChainBreak(0, "checkpoint mismatch", "bad genesis checkpoint"))
    return result(checked, None)


def organizations_with_audit_data() -> list[uuid.UUID]:
    """Every organisation id that has a chain head, an event or a checkpoint."""
    ids: set[uuid.UUID] = set(ChainHead.objects.values_list("org_id", flat=True))
    ids.update(AuditEvent.objects.order_by().values_list("org_id", flat=True).distinct())
    ids.update(Checkpoint.objects.order_by().values_list("org_id", flat=True).distinct())
    return sorted(ids)
