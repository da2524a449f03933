"""Agent sessions seen by this process, written to the database in the background.

The hot path only bumps in-memory counters; a loop flushes them every second with one
upsert per active session (never an ORM call per request).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

log = logging.getLogger("igris.proxy.sessions")


def new_session_id() -> str:
    # Visible ASCII, cryptographically random (MCP 2025-11-25 transports, session management).
    return "igs_" + secrets.token_urlsafe(24)


def parse_binding(value: str | None) -> dict[str, Any] | None:
    """A legacy session's binding (org, key identity, server, upstream session id, client), as
    stored in its hot-state flag; None when missing or unreadable."""
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass
class _Pending:
    org_id: str
    server_id: str
    server_slug: str
    key_id: str | None
    user_id: int | None
    era: str
    protocol_version: str
    client_name: str = ""
    client_version: str = ""
    slot: str = ""
    generation: int = 0
    calls: int = 0
    denied: int = 0
    errors: int = 0
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_seen: datetime = field(default_factory=lambda: datetime.now(UTC))
    closed: bool = False


def _flush(batch: dict[str, _Pending]) -> None:
    from django.db import IntegrityError, connection

    try:
        for sid, p in batch.items():
            try:
                _flush_one(sid, p)
            except IntegrityError:
                # Its organisation, server or key was deleted meanwhile: nothing to record it on.
                log.warning("dropping the counts of session %s: its owner is gone", sid)
    finally:
        connection.close()


def _flush_one(sid: str, p: _Pending) -> None:
    from django.db import transaction
    from django.db.models import F, Value
    from django.db.models.functions import Greatest

    from governance.models import AgentSession, SessionState

    # Several processes serve one session: each adds its own counts, and last-seen only moves on.
    counts = dict(
        calls=F("calls") + p.calls,
        denied=F("denied") + p.denied,
        errors=F("errors") + p.errors,
        last_seen_at=Greatest(F("last_seen_at"), Value(p.last_seen)),
    )
    with transaction.atomic():
        updated = AgentSession.objects.filter(pk=sid).update(**counts)
        if not updated:
            _session, created = AgentSession.objects.get_or_create(
                pk=sid,
                defaults=dict(
                    org_id=p.org_id,
                    server_id=p.server_id,
                    server_slug=p.server_slug,
                    key_id=p.key_id,
                    user_id=p.user_id,
                    era=p.era,
                    protocol_version=p.protocol_version,
                    client_name=p.client_name[:200],
                    client_version=p.client_version[:100],
                    slot=p.slot,
                    generation=p.generation,
                    calls=p.calls,
                    denied=p.denied,
                    errors=p.errors,
                    # When this process first saw it, not when the row is written: a session
                    # never starts after it was last seen.
                    started_at=min(p.started, p.last_seen),
                    last_seen_at=p.last_seen,
                ),
            )
            if not created:  # another process created the row since the update above
                AgentSession.objects.filter(pk=sid).update(**counts)
        if p.closed:
            AgentSession.objects.filter(pk=sid, state=SessionState.ACTIVE).update(
                state=SessionState.CLOSED, ended_at=p.last_seen
            )


def _close(session_ids: set[str]) -> None:
    from django.db import connection

    from governance.models import AgentSession, SessionState

    try:
        AgentSession.objects.filter(pk__in=session_ids, state=SessionState.ACTIVE).update(
            state=SessionState.CLOSED, ended_at=datetime.now(UTC)
        )
    finally:
        connection.close()


class SessionRecorder:
    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._pending: dict[str, _Pending] = {}
        self._closed_only: set[str] = set()

    def _entry(self, exchange: Any) -> _Pending | None:
        sid = exchange.session_id
        if not sid:
            return None
        entry = self._pending.get(sid)
        if entry is None:
            client = exchange.client_info() or {}
            entry = _Pending(
                org_id=exchange.principal.org_id,
                server_id=exchange.server.id,
                server_slug=exchange.server.slug,
                key_id=exchange.principal.key_id,
                user_id=exchange.principal.user_id,
                era="modern" if exchange.era.modern else "legacy",
                protocol_version=exchange.era.version,
                client_name=client.get("name") or "",
                client_version=client.get("version") or "",
                slot=exchange.slot or "",
                generation=exchange.generation,
            )
            self._pending[sid] = entry
        return entry

    def note_call(self, exchange: Any, *, denied: bool, error: bool) -> None:
        entry = self._entry(exchange)
        if entry is None:
            return
        entry.calls += 1
        entry.denied += int(denied)
        entry.errors += int(error)
        entry.last_seen = datetime.now(UTC)

    def note_start(self, exchange: Any) -> None:
        self._entry(exchange)

    def note_closed(self, session_id: str) -> None:
        entry = self._pending.get(session_id)
        if entry is not None:
            entry.closed = True
            return
        self._closed_only.add(session_id)

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        closed, self._closed_only = self._closed_only, set()
        try:
            if closed:
                await sync_to_async(_close, thread_sensitive=False)(closed)
            if batch:
                await sync_to_async(_flush, thread_sensitive=False)(batch)
        except Exception:
            # Keep the counts for the next attempt rather than losing them.
            self._closed_only |= closed
            for sid, p in batch.items():
                current = self._pending.get(sid)
                if current is None:
                    self._pending[sid] = p
                else:
                    current.calls += p.calls
                    current.denied += p.denied
                    current.errors += p.errors
            raise

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not record agent sessions; will retry")
