"""Per-upstream circuit breakers: stop forwarding to an upstream that keeps failing.

The three states of the pattern (M. Nygard, "Release It!", "Circuit Breaker"): closed until
IGRIS_BREAKER_FAILURES consecutive failures (unreachable, timeout, invalid answer, HTTP 5xx;
never a policy denial or a client that cancels); then open: calls fail fast with -31013 and a
Retry-After instead of tying up connections and the caller's time; after
IGRIS_BREAKER_COOLDOWN_S, half-open: one trial call goes through, its success closes the
circuit and its failure opens it again.

Cost on the hot path: each process decides from its own counters, so a call through a closed
circuit is a dict lookup and no hot-state round trip. Only transitions touch the hot state:
they are published as the flag `circuit:<server id>` (JSON, governance.runtime.flags.Circuit),
so the other processes open too and the API and console can show the state, and recorded as
`upstream_circuit` audit events. Across processes the one trial is claimed with
`set_if_absent` on `circuit-trial:<server id>`. A process started after a circuit opened
learns of it from its own failures or the next transition.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from governance.events import SYSTEM
from governance.runtime import flags
from proxy import audit

log = logging.getLogger("igris.proxy")

# A published state outlives any sensible cool-down; a stale one only shows in the console.
STATE_TTL_S = 24 * 3600.0
# While another process runs the trial, ask again this often (and tell callers to wait as long).
TRIAL_RECHECK_S = 1.0
MAX_ERROR_CHARS = 300

CLOSED, OPEN, HALF_OPEN = flags.CIRCUIT_CLOSED, flags.CIRCUIT_OPEN, flags.CIRCUIT_HALF_OPEN


@dataclass
class _Circuit:
    """One server's breaker in this process; a closed one with no failures is not kept."""

    state: str = CLOSED
    failures: int = 0
    opened_at: float | None = None
    retry_at: float = 0.0  # open: end of the cool-down; half-open: when to ask for the trial
    last_error: str = ""
    trials: int = 0  # this process's trial call in flight (0 or 1)


@dataclass(frozen=True)
class Refusal:
    """The circuit is open: answer at once, the upstream is not touched."""

    retry_after_s: float
    last_error: str

    @property
    def retry_after(self) -> int:
        """Whole seconds, for Retry-After (RFC 9110 §10.2.3)."""
        return max(1, math.ceil(self.retry_after_s))


class Breakers:
    """The breakers of one proxy process, keyed by server id."""

    def __init__(self, recorder: audit.AuditRecorder, hotstate: Callable[[], Any]) -> None:
        self.recorder = recorder
        self.hotstate = hotstate  # this loop's hot state
        self.token = uuid.uuid4().hex
        self._circuits: dict[str, _Circuit] = {}

    def state(self, server_id: str) -> str:
        circuit = self._circuits.get(server_id)
        return CLOSED if circuit is None else circuit.state

    async def admit(self, server: Any) -> Refusal | bool:
        """False: forward; True: forward as the trial of a half-open circuit (call
        `finish_trial` when done); a Refusal: answer with it."""
        circuit = self._circuits.get(server.id)
        if circuit is None or circuit.state == CLOSED:
            return False
        now = time.time()
        if circuit.state == OPEN and now < circuit.retry_at:
            return Refusal(circuit.retry_at - now, circuit.last_error)
        if circuit.state == HALF_OPEN and (circuit.trials or now < circuit.retry_at):
            return Refusal(max(circuit.retry_at - now, TRIAL_RECHECK_S), circuit.last_error)
        return await self._claim_trial(server, circuit, now)

    async def settle(self, server: Any, *, trial: bool, error: str | None) -> None:
        """Count one upstream outcome: `error` None for an answer, else what went wrong."""
        circuit = self._circuits.get(server.id)
        if error is None:
            if circuit is None:
                return
            if circuit.state == CLOSED:
                del self._circuits[server.id]
            elif trial:
                await self._close(server, circuit)
            return
        threshold = int(settings.IGRIS_BREAKER_FAILURES)
        if threshold <= 0:
            return
        if circuit is None:
            circuit = self._circuits[server.id] = _Circuit()
        circuit.failures += 1
        circuit.last_error = error[:MAX_ERROR_CHARS]
        # A failed trial opens the circuit again; other calls count towards opening it.
        if trial if circuit.state != CLOSED else circuit.failures >= threshold:
            circuit.trials = 0
            await self._open(server, circuit)

    async def finish_trial(self, server: Any) -> None:
        """After a trial call, whatever happened: a trial that ended without an outcome (the
        client left, the stream was killed) hands the trial to the next call."""
        circuit = self._circuits.get(server.id)
        if circuit is None or not circuit.trials:
            return  # settled: closed, or opened again
        circuit.trials = 0
        if circuit.state == HALF_OPEN:
            circuit.state = OPEN
            circuit.retry_at = time.time()
        await self._release_trial(server)

    def on_flag(self, key: str, value: str | None) -> None:
        """A transition published by a process (or a reset from the console or API)."""
        server_id = key.partition(":")[2]
        published = flags.parse_circuit(value)
        if published.by == self.token:
            return
        if published.state == CLOSED:
            self._circuits.pop(server_id, None)
            return
        circuit = self._circuits.setdefault(server_id, _Circuit())
        circuit.failures = published.failures
        circuit.last_error = published.last_error
        if published.state == OPEN:
            # A trial of ours still in flight keeps its say: its success closes the circuit.
            circuit.state = OPEN
            circuit.opened_at = published.opened_at
            circuit.retry_at = published.retry_at or time.time()
        elif not circuit.trials:
            # Another process runs the trial.
            circuit.state = HALF_OPEN
            circuit.retry_at = time.time() + TRIAL_RECHECK_S

    # --- transitions --------------------------------------------------------------------

    async def _claim_trial(self, server: Any, circuit: _Circuit, now: float) -> Refusal | bool:
        ttl_s = server.connect_timeout_s + server.total_timeout_s + TRIAL_RECHECK_S
        try:
            won = await self.hotstate().set_if_absent(
                flags.circuit_trial(server.id), self.token, ttl_s
            )
        except Exception:
            # The admission round trip fails closed anyway when the store is down for good.
            log.warning("hot state unavailable; the trial of %s is decided here", server.slug)
            won = True
        if self._circuits.get(server.id) is not circuit:
            # Closed meanwhile (a reset or another process's trial): forward as usual.
            if won:
                await self._release_trial(server)
            return False
        if not won:
            if circuit.state == OPEN and circuit.retry_at <= now:
                circuit.state = HALF_OPEN
                circuit.retry_at = now + TRIAL_RECHECK_S
            return Refusal(TRIAL_RECHECK_S, circuit.last_error)
        circuit.state = HALF_OPEN
        circuit.trials += 1
        circuit.retry_at = now + TRIAL_RECHECK_S
        await self._publish(server, circuit)
        return True

    async def _open(self, server: Any, circuit: _Circuit) -> None:
        reopened = circuit.state != CLOSED
        now = time.time()
        circuit.state = OPEN
        circuit.opened_at = now
        circuit.retry_at = now + float(settings.IGRIS_BREAKER_COOLDOWN_S)
        log.warning(
            "circuit of upstream %s open after %d failures: %s",
            server.slug,
            circuit.failures,
            circuit.last_error,
        )
        await self._publish(server, circuit)
        if reopened:
            await self._release_trial(server)
        await self._record(server, circuit, reopened=reopened)

    async def _close(self, server: Any, circuit: _Circuit) -> None:
        self._circuits.pop(server.id, None)
        log.info("circuit of upstream %s closed: a trial call succeeded", server.slug)
        closed = _Circuit(opened_at=circuit.opened_at)
        await self._publish(server, closed)
        await self._release_trial(server)
        await self._record(server, closed, reopened=False)

    async def _publish(self, server: Any, circuit: _Circuit) -> None:
        state = flags.Circuit(
            state=circuit.state,
            failures=circuit.failures,
            opened_at=circuit.opened_at if circuit.state != CLOSED else None,
            retry_at=circuit.retry_at if circuit.state != CLOSED else None,
            last_error=circuit.last_error,
            by=self.token,
        )
        try:
            await self.hotstate().set_flag(
                flags.circuit(server.id), state.encode(), ttl_s=STATE_TTL_S
            )
        except Exception:
            log.warning("could not publish the circuit of %s", server.slug, exc_info=True)

    async def _release_trial(self, server: Any) -> None:
        try:
            await self.hotstate().delete_flag(flags.circuit_trial(server.id))
        except Exception:
            log.warning("could not release the circuit trial of %s", server.slug, exc_info=True)

    async def _record(self, server: Any, circuit: _Circuit, *, reopened: bool) -> None:
        data: dict[str, Any] = {"state": circuit.state, "failures": circuit.failures}
        if circuit.state == OPEN:
            data.update(
                last_error=circuit.last_error,
                retry_after_s=float(settings.IGRIS_BREAKER_COOLDOWN_S),
                reopened=reopened,
            )
        elif circuit.opened_at is not None:
            data["open_s"] = round(time.time() - circuit.opened_at, 3)
        event = audit.build_event(
            org_id=server.org_id,
            type="upstream_circuit",
            actor=SYSTEM,
            fields={"server_id": server.id, "server_slug": server.slug},
            data=data,
        )
        try:
            await self.recorder.record(event)
        except audit.AuditUnavailable:
            log.warning("could not record the circuit change of %s", server.slug)
