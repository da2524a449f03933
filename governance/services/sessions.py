"""Kill switch: kill, suspend and resume agent sessions, or stop a whole key, server or org.

Each change is stored, audited, and announced as a hot-state flag so every proxy process refuses
the session's next request and closes its open streams within a second.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.events import actor_for_user, emit
from governance.models import (
    AgentSession,
    ApiKey,
    KillScope,
    KillSwitch,
    McpServer,
    Organization,
    SessionState,
    User,
)
from governance.permissions import Action
from governance.runtime import flags
from governance.services.base import ServiceError, _check

__all__ = [
    "kill_lift",
    "org_emergency_stop",
    "session_kill",
    "session_resume",
    "session_suspend",
    "sessions_kill_for_key",
    "sessions_kill_for_server",
]

# Kill flags stay until lifted; a session flag outlives any session binding.
FLAG_TTL_S: float | None = None


def _announce(key: str, value: str | None) -> None:
    from governance.runtime.hotstate.sync import publish_flag_sync

    transaction.on_commit(lambda: publish_flag_sync(key, value, ttl_s=FLAG_TTL_S))


def _reason(reason: str) -> str:
    return (reason or "").strip()[:300]


@transaction.atomic
def session_kill(
    *, org: Organization, actor: User, session: AgentSession, reason: str = ""
) -> AgentSession:
    _check(org, actor, Action.SESSIONS_KILL)
    session = AgentSession.objects.select_for_update().get(pk=session.pk, org=org)
    if session.state == SessionState.KILLED:
        raise ServiceError("This session is already killed.", code="already_killed")
    session.state = SessionState.KILLED
    session.state_reason = _reason(reason)
    session.ended_at = timezone.now()
    session.save(update_fields=["state", "state_reason", "ended_at"])
    emit(
        org_id=org.id,
        type="session.killed",
        actor=actor_for_user(actor),
        data={
            "session_id": session.id,
            "server": session.server_slug,
            "reason": session.state_reason,
        },
    )
    _announce(flags.kill_session(session.id), f"killed:{session.state_reason}")
    _next_generation([(session.slot, session.generation)])
    return session


@transaction.atomic
def session_suspend(
    *, org: Organization, actor: User, session: AgentSession, reason: str = ""
) -> AgentSession:
    _check(org, actor, Action.SESSIONS_KILL)
    session = AgentSession.objects.select_for_update().get(pk=session.pk, org=org)
    if session.state != SessionState.ACTIVE:
        raise ServiceError(
            f"Only an active session can be suspended (this one is {session.state}).",
            code="not_active",
        )
    session.state = SessionState.SUSPENDED
    session.state_reason = _reason(reason)
    session.save(update_fields=["state", "state_reason"])
    emit(
        org_id=org.id,
        type="session.suspended",
        actor=actor_for_user(actor),
        data={
            "session_id": session.id,
            "server": session.server_slug,
            "reason": session.state_reason,
        },
    )
    # A 2026-07-28-era session is its slot's current generation: the stop is on the slot, so it
    # holds whichever way the agent's next call arrives.
    stop = flags.kill_slot(session.slot) if session.slot else flags.kill_session(session.id)
    _announce(stop, f"suspended:{session.state_reason}")
    return session


@transaction.atomic
def session_resume(*, org: Organization, actor: User, session: AgentSession) -> AgentSession:
    _check(org, actor, Action.SESSIONS_KILL)
    session = AgentSession.objects.select_for_update().get(pk=session.pk, org=org)
    if session.state != SessionState.SUSPENDED:
        raise ServiceError(
            f"Only a suspended session can be resumed (this one is {session.state}).",
            code="not_suspended",
        )
    session.state = SessionState.ACTIVE
    session.state_reason = ""
    session.save(update_fields=["state", "state_reason"])
    emit(
        org_id=org.id,
        type="session.resumed",
        actor=actor_for_user(actor),
        data={"session_id": session.id, "server": session.server_slug},
    )
    _announce(
        flags.kill_slot(session.slot) if session.slot else flags.kill_session(session.id), None
    )
    return session


def _stand(org: Organization, actor: User, scope: str, target_id: Any, reason: str) -> None:
    """Record the stop so it can be restored if the hot state loses its flag."""
    KillSwitch.objects.update_or_create(
        scope=scope,
        target_id=target_id,
        defaults={"org": org, "reason": reason, "created_by": actor, "created_at": timezone.now()},
    )


def _next_generation(slots: list[tuple[str, int]]) -> None:
    """Move 2026-07-28-era slots past their killed sessions: the agent's next call opens a new
    session (a new row) instead of meeting the killed one for ever, and a suspension of the
    killed session goes with it."""
    for slot, generation in slots:
        if slot:
            _announce(flags.session_generation(slot), str(generation + 1))
            _announce(flags.kill_slot(slot), None)


def _kill_many(org: Organization, sessions: Any, reason: str) -> int:
    live = sessions.filter(org=org, state__in=[SessionState.ACTIVE, SessionState.SUSPENDED])
    _next_generation(list(live.exclude(slot="").values_list("slot", "generation")))
    return live.update(state=SessionState.KILLED, state_reason=reason, ended_at=timezone.now())


@transaction.atomic
def sessions_kill_for_key(*, org: Organization, actor: User, key: ApiKey, reason: str = "") -> int:
    """Refuse every request made with this key until lifted, and kill its sessions."""
    _check(org, actor, Action.SESSIONS_KILL)
    if key.org_id != org.id:
        raise ServiceError("No such API key in this organisation.", code="not_found")
    reason = _reason(reason)
    count = _kill_many(org, AgentSession.objects.filter(key=key), reason)
    emit(
        org_id=org.id,
        type="session.killed_for_key",
        actor=actor_for_user(actor),
        data={"key_id": str(key.id), "key": key.name, "sessions": count, "reason": reason},
    )
    _stand(org, actor, KillScope.KEY, key.id, reason)
    _announce(flags.kill_key(key.id), f"killed:{reason}")
    return count


@transaction.atomic
def sessions_kill_for_server(
    *, org: Organization, actor: User, server: McpServer, reason: str = ""
) -> int:
    _check(org, actor, Action.SESSIONS_KILL)
    if server.org_id != org.id:
        raise ServiceError("No such MCP server in this organisation.", code="not_found")
    reason = _reason(reason)
    count = _kill_many(org, AgentSession.objects.filter(server=server), reason)
    emit(
        org_id=org.id,
        type="session.killed_for_server",
        actor=actor_for_user(actor),
        data={
            "server_id": str(server.id),
            "server": server.slug,
            "sessions": count,
            "reason": reason,
        },
    )
    _stand(org, actor, KillScope.SERVER, server.id, reason)
    _announce(flags.kill_server(server.id), f"killed:{reason}")
    return count


@transaction.atomic
def org_emergency_stop(*, org: Organization, actor: User, reason: str = "") -> int:
    """Stop every agent of the organisation at once."""
    _check(org, actor, Action.SESSIONS_KILL)
    reason = _reason(reason) or "emergency stop"
    count = _kill_many(org, AgentSession.objects.all(), reason)
    emit(
        org_id=org.id,
        type="org.emergency_stop",
        actor=actor_for_user(actor),
        data={"sessions": count, "reason": reason},
    )
    _stand(org, actor, KillScope.ORG, org.id, reason)
    _announce(flags.kill_org(org.id), f"killed:{reason}")
    return count


@transaction.atomic
def kill_lift(*, org: Organization, actor: User, scope: str, target_id: Any = None) -> None:
    """Lift a key-, server- or organisation-wide stop (killed sessions stay killed)."""
    _check(org, actor, Action.SESSIONS_KILL)
    if scope == "org":
        key = flags.kill_org(org.id)
    elif scope == "key":
        if not ApiKey.objects.filter(org=org, pk=target_id).exists():
            raise ServiceError("No such API key in this organisation.", code="not_found")
        key = flags.kill_key(target_id)
    elif scope == "server":
        if not McpServer.objects.filter(org=org, pk=target_id).exists():
            raise ServiceError("No such MCP server in this organisation.", code="not_found")
        key = flags.kill_server(target_id)
    else:
        raise ServiceError("scope must be org, key or server.", field="scope")
    stopped = org.id if scope == "org" else target_id
    KillSwitch.objects.filter(org=org, scope=scope, target_id=stopped).delete()
    emit(
        org_id=org.id,
        type="kill.lifted",
        actor=actor_for_user(actor),
        data={"scope": scope, "target_id": str(target_id) if target_id else None},
    )
    _announce(key, None)
