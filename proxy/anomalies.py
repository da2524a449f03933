"""Anomaly detectors, run after a call is answered (never on the response path).

- destructive_pattern: tool names like delete_*, drop_*, truncate_*, destroy_*, purge_*, and
  tools annotated destructiveHint: true (and not readOnlyHint) — even when a policy allowed them;
- rate_spike: the session's calls in the current minute exceed 3x its rolling average over the
  previous ten minutes, with a minimum volume so a quiet session's first burst is not a spike;
- tool_drift: reported by the catalogue when a tool's description or schema changed;
- policy_alert: a rule with action alert matched.
Each fires at most once per session and kind per cooldown (5 minutes), is made durable as an
audit event, stored as an Anomaly and, if the organisation asks, suspends the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from governance.destructive import is_destructive_name
from governance.policy import Decision
from governance.runtime import flags
from proxy import audit
from proxy.catalog import Catalog
from proxy.exchange import Exchange
from proxy.sessions import SessionRecorder

log = logging.getLogger("igris.proxy.anomalies")

COOLDOWN_S = 300.0
LOCAL_COOLDOWN_S = 30.0
SPIKE_FACTOR = 3.0
SPIKE_MIN_VOLUME = 30
WINDOW_BUCKETS = 11  # ten full minutes of history plus the current one
SEVERITY = {
    "destructive_pattern": "high",
    "tool_drift": "high",
    "rate_spike": "medium",
    "policy_alert": "medium",
}


def is_destructive(name: str | None, annotations: dict[str, Any] | None) -> bool:
    if is_destructive_name(name):
        return True
    ann = annotations or {}
    # MCP tool annotations are hints from the server (untrusted), used only to raise alerts here.
    return ann.get("destructiveHint") is True and ann.get("readOnlyHint") is not True


def is_spike(buckets: list[int]) -> bool:
    if not buckets:
        return False
    current, history = buckets[-1], buckets[:-1]
    average = sum(history) / len(history) if history else 0.0
    return current >= SPIKE_MIN_VOLUME and current > SPIKE_FACTOR * average


def _store(event: dict[str, Any], detail: dict[str, Any], auto_suspend: bool) -> None:
    from django.db import connection

    from governance.services.anomalies import anomaly_record

    try:
        anomaly_record(
            org_id=event["org_id"],
            session_id=event["data"].get("session_id"),
            server_slug=event["data"].get("server_slug") or "",
            kind=detail["kind"],
            severity=detail["severity"],
            tool=event["data"].get("tool"),
            detail=detail,
            event_id=event["id"],
            auto_suspend=auto_suspend,
        )
    finally:
        connection.close()


class Detector:
    def __init__(
        self,
        *,
        recorder: audit.AuditRecorder,
        hotstate: Callable[[], Any],
        sessions: SessionRecorder,
        catalog: Catalog,
    ) -> None:
        self.recorder = recorder
        self.hotstate = hotstate  # this loop's hot state
        self.sessions = sessions
        self.catalog = catalog
        self._tasks: set[asyncio.Task[Any]] = set()
        # Per session: calls since the last flush and the latest exchange (for the event).
        self._calls: dict[str, tuple[int, Any]] = {}
        # Cooldowns known to be running, so a busy session costs no round trip per call.
        self._cooling: dict[str, float] = {}

    def after_call(self, exchange: Exchange, decision: Decision | None) -> None:
        task = asyncio.create_task(self._check(exchange, decision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def report_drift(self, exchange: Exchange, names: list[str]) -> None:
        for name in names:
            task = asyncio.create_task(
                self._fire(
                    exchange,
                    "tool_drift",
                    name,
                    {"message": f"tool '{name}' changed since it was approved"},
                )
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _check(self, exchange: Exchange, decision: Decision | None) -> None:
        try:
            msg = exchange.msg
            name = msg.name if msg else None
            if msg is None or msg.method != "tools/call":
                return
            tools = await self.catalog.tools(exchange.server.id)
            info = tools.get(name or "")
            if is_destructive(name, info.annotations if info else None):
                await self._fire(
                    exchange,
                    "destructive_pattern",
                    name,
                    {
                        # Say what happened: a denied call never reached the upstream.
                        "message": (
                            f"destructive tool '{name}' was attempted and denied"
                            f" (rule {decision.rule_id})"
                            if decision is not None and decision.action == "deny"
                            else f"destructive tool '{name}' was called"
                        ),
                        "denied": decision is not None and decision.action == "deny",
                    },
                )
            if decision is not None and decision.action == "alert":
                await self._fire(
                    exchange,
                    "policy_alert",
                    name,
                    {
                        "message": decision.message or f"rule {decision.rule_id} matched",
                        "rule": decision.rule_id,
                        "version": decision.version,
                    },
                )
            if exchange.session_id:
                # Counted here, added to the shared window once a second (see run()).
                pending = self._calls.get(exchange.session_id)
                self._calls[exchange.session_id] = (1 + (pending[0] if pending else 0), exchange)
        except Exception:
            log.exception("anomaly detection failed")

    async def flush_windows(self) -> None:
        """Add each session's recent calls to its shared per-minute window and look for spikes."""
        pending, self._calls = self._calls, {}
        for session_id, (count, exchange) in pending.items():
            stats = await self.hotstate().window_add(
                f"calls:{session_id}", bucket_s=60, buckets=WINDOW_BUCKETS, amount=count
            )
            if is_spike(stats.buckets):
                msg = exchange.msg
                await self._fire(
                    exchange,
                    "rate_spike",
                    msg.name if msg else None,
                    {
                        "message": f"{stats.current} calls this minute, over {SPIKE_FACTOR:g}x "
                        "the session's rolling average",
                        "buckets": stats.buckets,
                    },
                )

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush_windows()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rate-spike window update failed")

    async def _fire(
        self, exchange: Exchange, kind: str, tool: str | None, detail: dict[str, Any]
    ) -> None:
        try:
            scope = exchange.session_id or exchange.principal.identity
            cooldown = flags.anomaly_cooldown(scope, kind)
            now = time.monotonic()
            if self._cooling.get(cooldown, 0.0) > now:
                return
            if len(self._cooling) > 100_000:
                self._cooling = {k: v for k, v in self._cooling.items() if v > now}
            if not await self.hotstate().set_if_absent(cooldown, "1", COOLDOWN_S):
                # Another process fired it: stay quiet here a while without asking again.
                self._cooling[cooldown] = now + LOCAL_COOLDOWN_S
                return
            self._cooling[cooldown] = now + COOLDOWN_S
            data = {"kind": kind, "severity": SEVERITY.get(kind, "medium"), **detail}
            event = exchange.event(decision="observed", result="anomaly", data=data)
            event["type"] = "anomaly"
            event["data"]["tool"] = tool
            await self.recorder.record(event)
            await self.sessions.flush()
            auto = bool(exchange.org and exchange.org.auto_suspend_on_anomaly)
            await sync_to_async(_store, thread_sensitive=False)(event, data, auto)
        except Exception:
            log.exception("could not record anomaly %s", kind)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
