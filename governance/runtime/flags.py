"""Names of the hot-state flags shared by the services that set them and the proxy that reads
them. Values of kill flags are "<state>:<reason>" with state killed or suspended; circuit flags
are published by the proxy's breakers and read by the API and console (JSON, `Circuit`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


def kill_org(org_id: Any) -> str:
    return f"kill:org:{org_id}"


def kill_key(key_id: Any) -> str:
    return f"kill:key:{key_id}"


def kill_server(server_id: Any) -> str:
    return f"kill:server:{server_id}"


def kill_session(session_id: Any) -> str:
    return f"kill:sess:{session_id}"


# The 2026-07-28 era has no session handshake, so igris groups an agent's calls into a session by
# its slot: who (key or user) calls which server with which client. The slot's generation flag says
# which session is current: a kill moves it on, so the killed session stays killed and the agent's
# next call opens a new one. A suspension is a stop flag on the slot, held until resumed.


def session_generation(slot: Any) -> str:
    return f"sessgen:{slot}"


def kill_slot(slot: Any) -> str:
    return f"kill:slot:{slot}"


def parse_generation(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def session_binding(session_id: Any) -> str:
    return f"sess:{session_id}"


def policy_changed(org_id: Any) -> str:
    return f"policy:{org_id}"


def server_changed(org_id: Any) -> str:
    return f"server:{org_id}"


def parse_kill(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    state, _, reason = value.partition(":")
    return state, reason


def tools_changed(server_id: Any) -> str:
    return f"tools:{server_id}"


def anomaly_cooldown(session_id: Any, kind: str) -> str:
    return f"cooldown:{session_id}:{kind}"


# --- circuit breakers (proxy.breaker publishes, the API and console read) -------------------

CIRCUIT_CLOSED = "closed"
CIRCUIT_OPEN = "open"
CIRCUIT_HALF_OPEN = "half_open"
CIRCUIT_UNKNOWN = "unknown"  # the hot state could not be read


def circuit(server_id: Any) -> str:
    return f"circuit:{server_id}"


def circuit_trial(server_id: Any) -> str:
    """Held by the one process whose trial request probes a half-open circuit."""
    return f"circuit-trial:{server_id}"


@dataclass(frozen=True)
class Circuit:
    """A breaker's last published state. Times are Unix seconds; `by` names the publishing
    process so it can ignore its own announcements."""

    state: str = CIRCUIT_CLOSED
    failures: int = 0
    opened_at: float | None = None
    retry_at: float | None = None
    last_error: str = ""
    by: str = ""

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @property
    def opened(self) -> datetime | None:
        return _utc(self.opened_at)

    @property
    def retry(self) -> datetime | None:
        return _utc(self.retry_at)


def _utc(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def parse_circuit(value: str | None) -> Circuit:
    """A flag value as a Circuit; no value (or one that is not ours) reads as closed."""
    if not value:
        return Circuit()
    try:
        raw = json.loads(value)
        state = raw["state"]
        if state not in (CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN):
            return Circuit()
        return Circuit(
            state=state,
            failures=int(raw.get("failures") or 0),
            opened_at=_number(raw.get("opened_at")),
            retry_at=_number(raw.get("retry_at")),
            last_error=str(raw.get("last_error") or ""),
            by=str(raw.get("by") or ""),
        )
    except (ValueError, KeyError, TypeError):
        return Circuit()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
