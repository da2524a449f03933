"""The feed's events and filters, and the audit table they are replayed from.

An event is rendered once per process (`LiveEvent`: its JSON and its SSE frame) and shared by
that process's connections. A `FeedFilter` is checked against live events in memory and turned
into the same filter on the audit table for the replay. The ORM runs in worker threads, whose
connections are closed after each query.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from django.db.models import Q

from compliance.models import AuditEvent, ChainHead


def kind_of(type_: str) -> str:
    """The feed's event name for an audit type: a proxied call keeps its record's name
    (`tool_call` for tools/call, `mcp_request` for every other method), so a live event and the
    audit row it links to never disagree."""
    if type_ in ("tool_call", "mcp_request"):
        return type_
    if type_ == "anomaly" or type_.startswith("anomaly."):
        return "anomaly"
    if type_.startswith("session."):
        return "session_update"
    if type_.startswith("policy."):
        return "policy_change"
    return type_


_KIND_QUERIES = {
    "tool_call": Q(type__in=("tool_call", "mcp_request")),
    "anomaly": Q(type="anomaly") | Q(type__startswith="anomaly."),
    "session_update": Q(type__startswith="session."),
    "policy_change": Q(type__startswith="policy."),
}


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One stored event as the feed sends it; rendered once per process, shared by connections."""

    seq: int
    type: str
    kind: str
    server: str | None
    session: str | None
    payload: str  # the JSON sent as SSE data and as the websocket message
    frame: bytes  # the SSE event


def live_event(envelope: dict[str, Any]) -> LiveEvent | None:
    """From `AuditEvent.as_envelope()` / the writer's live message; None if it is not one."""
    seq, type_ = envelope.get("seq"), envelope.get("type")
    if type(seq) is not int or not isinstance(type_, str):
        return None
    data = envelope["data"] if isinstance(envelope.get("data"), dict) else {}
    kind = kind_of(type_)
    payload = json.dumps({"event": kind, **envelope}, separators=(",", ":"))
    server, session = data.get("server_slug"), data.get("session_id")
    return LiveEvent(
        seq=seq,
        type=type_,
        kind=kind,
        server=server if isinstance(server, str) else None,
        session=session if isinstance(session, str) else None,
        payload=payload,
        frame=f"id: {seq}\nevent: {kind}\ndata: {payload}\n\n".encode(),
    )


@dataclass(frozen=True, slots=True)
class FeedFilter:
    kinds: frozenset[str] | None = None
    server: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        # `types=tool_call` asks for every proxied call, as documented: tools/call and the other
        # methods, whose events are named `mcp_request` like their audit rows.
        if self.kinds is not None and "tool_call" in self.kinds:
            object.__setattr__(self, "kinds", self.kinds | {"mcp_request"})

    def matches(self, event: LiveEvent) -> bool:
        if self.kinds is not None and event.kind not in self.kinds and event.type not in self.kinds:
            return False
        if self.server is not None and event.server != self.server:
            return False
        return self.session is None or event.session == self.session

    def query(self) -> Q:
        """The same filter for the audit table (the replay)."""
        q = Q()
        if self.kinds is not None:
            any_kind = Q(pk__in=[])
            for kind in sorted(self.kinds):
                any_kind |= _KIND_QUERIES.get(kind, Q(type=kind))
            q &= any_kind
        if self.server is not None:
            q &= Q(server_slug=self.server)
        if self.session is not None:
            q &= Q(session_id=self.session)
        return q


# --- the audit table ----------------------------------------------------------------------------


def closing(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run in a worker thread and close its connection: threads live outside the request cycle."""

    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _head(org_id: str) -> int:
    # Updated in the transaction that stores the events: every seq up to it is committed.
    return ChainHead.objects.filter(org_id=org_id).values_list("seq", flat=True).first() or 0


def _stored(org_id: str, after: int, upto: int, q: Q, limit: int) -> list[LiveEvent]:
    rows = AuditEvent.objects.filter(q, org_id=org_id, seq__gt=after, seq__lte=upto).order_by(
        "seq"
    )[:limit]
    return [event for row in rows if (event := live_event(row.as_envelope())) is not None]


head_seq = closing(_head)
stored_events = closing(_stored)
