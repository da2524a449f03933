"""Stops that must survive the hot state losing its data.

Kill and suspend flags live in the hot state, where the proxy reads them in its one admission
round trip. A Redis restarted without persistence (or the embedded default's in-process state after
a restart) would silently lift every stop. So:

- every stop is also recorded in the database (KillSwitch for keys, servers and organisations;
  AgentSession.state for sessions);
- the hot state carries an epoch flag, set once its stops are known to be complete. The proxy asks
  for it with every admission (no extra round trip); when it is missing, the state was lost, and
  `ensure_standing` restores every stop from the database before anything is admitted.

One process restores (elected with `set_if_absent`); the others wait for the epoch to appear.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from governance.runtime import flags
from governance.runtime.hotstate.base import HotState

log = logging.getLogger("igris.standing")

EPOCH_FLAG = "state-epoch"
RESTORE_LOCK = "state-restore"
RESTORE_LOCK_TTL_S = 30.0


def standing_flags() -> dict[str, str]:
    """Every stop the database holds, as hot-state flags (key -> value)."""
    from governance.models import AgentSession, KillScope, KillSwitch, SessionState

    name = {
        KillScope.ORG: flags.kill_org,
        KillScope.KEY: flags.kill_key,
        KillScope.SERVER: flags.kill_server,
    }
    out = {
        name[KillScope(scope)](target): f"killed:{reason}"
        for scope, target, reason in KillSwitch.objects.values_list("scope", "target_id", "reason")
    }
    # A session idle for longer than the binding TTL cannot be resumed by any client anyway.
    since = timezone.now() - timedelta(seconds=int(settings.IGRIS_SESSION_TTL_S))
    sessions = AgentSession.objects.filter(
        state__in=[SessionState.KILLED, SessionState.SUSPENDED], last_seen_at__gte=since
    ).values_list("id", "state", "state_reason")
    for session_id, state, reason in sessions:
        out[flags.kill_session(session_id)] = f"{state}:{reason}"
    out.update(_slot_flags())
    return out


def _slot_flags() -> dict[str, str]:
    """2026-07-28-era slots: the current generation (past every killed session, however old, so
    a killed session never comes back) and the stop of a suspended current session."""
    from governance.models import AgentSession, SessionState

    rows = (
        AgentSession.objects.exclude(slot="")
        .filter(Q(generation__gt=0) | Q(state__in=[SessionState.KILLED, SessionState.SUSPENDED]))
        .values_list("slot", "generation", "state", "state_reason")
    )
    current: dict[str, int] = {}
    suspended: dict[str, tuple[int, str]] = {}
    for slot, generation, state, reason in rows:
        after = generation + 1 if state == SessionState.KILLED else generation
        current[slot] = max(current.get(slot, 0), after)
        if state == SessionState.SUSPENDED:
            suspended[slot] = (generation, reason)
    out = {flags.session_generation(slot): str(g) for slot, g in current.items() if g}
    for slot, (generation, reason) in suspended.items():
        if generation == current[slot]:
            out[flags.kill_slot(slot)] = f"suspended:{reason}"
    return out


def _standing_flags_closing() -> dict[str, str]:
    from django.db import connection

    try:
        return standing_flags()
    finally:
        connection.close()


async def ensure_standing(hs: HotState, *, wait_s: float = 5.0) -> bool:
    """True once the hot state's stops are complete, restoring them first if they were lost.

    False when another process's restore did not finish within `wait_s` (the caller refuses the
    request rather than admit it without its stops).
    """
    if await hs.get_flag(EPOCH_FLAG):
        return True
    token = secrets.token_hex(8)
    if await hs.set_if_absent(RESTORE_LOCK, token, RESTORE_LOCK_TTL_S):
        stops = await sync_to_async(_standing_flags_closing, thread_sensitive=False)()
        for key, value in stops.items():
            await hs.set_flag(key, value)
        await hs.set_flag(EPOCH_FLAG, token)
        await hs.delete_flag(RESTORE_LOCK)
        if stops:
            log.warning("the hot state had lost its flags: restored %d stops", len(stops))
        return True
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if await hs.get_flag(EPOCH_FLAG):
            return True
    return False
