"""Names of the hot-state flags shared by the services that set them and the proxy that reads
them. Values of kill flags are "<state>:<reason>" with state killed or suspended."""

from __future__ import annotations

from typing import Any


def kill_org(org_id: Any) -> str:
    return f"kill:org:{org_id}"


def kill_key(key_id: Any) -> str:
    return f"kill:key:{key_id}"


def kill_server(server_id: Any) -> str:
    return f"kill:server:{server_id}"


def kill_session(session_id: Any) -> str:
    return f"kill:sess:{session_id}"


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
