"""The event envelope and `emit`, used by every service that changes state.

Console/API state changes are written to the `PendingEvent` outbox in the same transaction as
the change, so a change and its audit record commit or roll back together; the audit writer
(compliance) moves them into the hash-chained audit table. The proxy hot path appends its
events to the hot-state stream instead (no ORM on that path).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from governance.policy.rules import ACTIONS

AUDIT_STREAM = "audit:events"

# The grammar of every audit event type: igris' own (`tool_call`, `policy.published`, ...) and
# those ingestion accepts from other gateways (compliance/ingest/items.py). No stored event has a
# type outside it, so a filter naming one is a mistake to report, not an empty result. Use with
# `.match` (`\Z`, not `$`, which would let a trailing newline through).
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.:-]{0,99}\Z")
EVENT_TYPE_RULE = (
    "1-100 characters: lower-case letters, digits and '_ . : -', starting with a letter"
)

# The `decision` a recorded call can carry (the audit column): what the policy decided, or what
# igris recorded when the policy was not asked.
DECISIONS: tuple[str, ...] = (
    *ACTIONS,
    "rate_limited",  # a key or rule rate limit refused the call (proxy/outcomes.py)
    "refused",  # the session was killed or suspended (proxy/outcomes.py)
    "rejected",  # not a valid MCP request, refused before the policy (mcp_rejected)
    "observed",  # recorded, not decided: an anomaly (proxy/anomalies.py, ingestion)
)


@dataclass(frozen=True)
class Actor:
    kind: str  # user | api_key | system | agent
    id: str | None = None
    label: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "id": self.id, "label": self.label}


SYSTEM = Actor(kind="system", id=None, label="igris")


@dataclass
class Envelope:
    org_id: str
    type: str
    source: str
    actor: Actor
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    ts: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "org_id": self.org_id,
            "type": self.type,
            "source": self.source,
            "ts": self.ts,
            "actor": self.actor.as_dict(),
            "data": self.data,
        }


def actor_for_user(user: Any) -> Actor:
    if user is None:
        return SYSTEM
    return Actor(kind="user", id=str(user.pk), label=getattr(user, "email", None))


def emit(
    *, org_id: Any, type: str, actor: Actor, data: dict[str, Any], source: str = "console"
) -> Envelope:
    """Record an audit event in the caller's transaction (call inside `transaction.atomic`)."""
    from governance.models import PendingEvent

    envelope = Envelope(org_id=str(org_id), type=type, source=source, actor=actor, data=data)
    PendingEvent.objects.create(org_id=org_id, payload=envelope.as_dict())
    return envelope
