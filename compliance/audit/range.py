"""Verify the stretch of an organisation's chain that holds one record, with bounded work.

`verify.verify_chain` walks the whole chain, which at a million rows takes seconds: right for the
scheduled check and the API, too slow for a page that shows one record. The signed checkpoints
(compliance-and-billing.md section 4.3, step 5) cut the chain into ranges that can be checked
alone: the range holding seq N runs from the newest checkpoint below N (its signed hash must be
the `prev_hash` of the range's first row) to the oldest checkpoint at or above N (its signed hash
must be the range's last row's hash), or to the chain head when no checkpoint follows yet. Every
row between is re-hashed and linked, as `verify_chain` does.

A range longer than `MAX_ROWS` is checked only around the record, and the answer says so
("partial"): its links hold, but it is not tied to a signed hash at both ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from compliance.audit.chain import GENESIS, event_hash
from compliance.audit.verify import ChainBreak, checkpoint_valid
from compliance.models import AuditEvent, ChainHead, Checkpoint

# Bounds the rows one page re-hashes, whatever the log's size. Measured (bench/audit_page.py,
# 200,000 records, a checkpoint every 1,000): a 1,000-row range puts the detail page at 72 ms
# median against 12 ms for the sessions list, about 60 µs a row (ORM row and re-hash), so
# 2,000 rows keep the page near 130 ms, inside the console's 300 ms budget.
MAX_ROWS = 2000

Status = Literal["verified", "partial", "broken"]


@dataclass(frozen=True, slots=True)
class Anchor:
    """One end of a range: what vouches for the hash there."""

    seq: int
    kind: Literal["genesis", "checkpoint", "head", "none"]
    checkpoint_id: int | None = None


@dataclass(frozen=True, slots=True)
class RangeStatus:
    status: Status
    first_seq: int  # the first row checked
    last_seq: int  # the last row checked
    checked: int
    start: Anchor  # what the first row's prev_hash was compared with
    end: Anchor  # what the last row's hash was compared with
    first_break: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.status != "broken"


def _bounds(
    org: uuid.UUID, seq: int
) -> tuple[Checkpoint | None, Checkpoint | None, ChainHead | None]:
    below = Checkpoint.objects.filter(org_id=org, seq__lt=seq).order_by("-seq", "-id").first()
    above = Checkpoint.objects.filter(org_id=org, seq__gte=seq).order_by("seq", "id").first()
    head = None if above is not None else ChainHead.objects.filter(org_id=org).first()
    return below, above, head


def verify_range(org_id: uuid.UUID | str, seq: int, *, max_rows: int | None = None) -> RangeStatus:
    """Verify the checkpoint range holding `seq` (at most `max_rows` rows read). Three or four
    queries: the checkpoints on either side, the chain head when none follows, the rows."""
    max_rows = MAX_ROWS if max_rows is None else max_rows
    org = uuid.UUID(str(org_id))
    below, above, head = _bounds(org, seq)
    lo = below.seq if below is not None else 0  # the range is (lo, hi]
    hi = above.seq if above is not None else (head.seq if head is not None else seq)
    hi = max(hi, seq)
    start = Anchor(lo, "checkpoint", below.id) if below is not None else Anchor(0, "genesis", None)
    end = Anchor(hi, "checkpoint", above.id) if above is not None else Anchor(hi, "head")
    if hi - lo > max_rows:
        # Check a window centred on the record; an end inside the range is vouched for by nothing.
        first = max(lo + 1, min(seq - max_rows // 2, hi - max_rows + 1))
        last = first + max_rows - 1
        if first > lo + 1:
            start = Anchor(first - 1, "none")
        if last < hi:
            end = Anchor(last, "none")
    else:
        first, last = lo + 1, hi

    def answer(checked: int, found: ChainBreak | None) -> RangeStatus:
        if found is not None:
            status: Status = "broken"
        elif start.kind == "none" or end.kind == "none":
            status = "partial"
        else:
            status = "verified"
        return RangeStatus(status, first, last, checked, start, end, found)

    for checkpoint in (below, above):
        if checkpoint is not None and not checkpoint_valid(checkpoint):
            detail = f"checkpoint {checkpoint.id} has an invalid signature or unknown key"
            return answer(0, ChainBreak(checkpoint.seq, "checkpoint mismatch", detail))

    rows = AuditEvent.objects.filter(org_id=org, seq__gte=first, seq__lte=last).order_by("seq")
    expected, checked = first, 0
    prev_hash: str | None = {"genesis": GENESIS, "checkpoint": below.hash if below else None}.get(
        start.kind
    )
    for event in rows.iterator(chunk_size=max_rows):
        if event.seq != expected:
            detail = f"seq {expected} is missing (next stored is {event.seq})"
            return answer(checked, ChainBreak(expected, "gap", detail))
        if event_hash(event.chain_dict()) != event.hash:
            return answer(checked, ChainBreak(event.seq, "hash mismatch", "row content changed"))
        if prev_hash is not None and event.prev_hash != prev_hash:
            if checked == 0 and start.kind == "checkpoint":
                detail = f"checkpoint {start.checkpoint_id} signed another hash at seq {lo}"
                return answer(checked, ChainBreak(event.seq, "checkpoint mismatch", detail))
            detail = "prev_hash is not the previous event's hash"
            return answer(checked, ChainBreak(event.seq, "prev_hash mismatch", detail))
        checked += 1
        prev_hash = event.hash
        expected += 1
    if expected <= last:
        detail = f"seq {expected} is missing (the range ends at {last})"
        return answer(checked, ChainBreak(expected, "gap", detail))
    if above is not None and end.kind == "checkpoint" and prev_hash != above.hash:
        detail = f"checkpoint {above.id} signed another hash at this seq"
        return answer(checked, ChainBreak(last, "checkpoint mismatch", detail))
    if head is not None and end.kind == "head" and last == head.seq and prev_hash != head.hash:
        return answer(
            checked, ChainBreak(last, "hash mismatch", "the chain head's hash is not this event's")
        )
    return answer(checked, None)
