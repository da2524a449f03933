"""Audit events of proxied requests: built here, made durable before the answer is sent.

Durability (DESIGN.md §3): with Redis the event is appended to the audit stream; in the embedded
default it is committed to the database outbox. If neither works the proxy fails closed.

The stream is the buffer that lets the proxy keep serving while PostgreSQL is down (the audit
writer catches up when it returns). It is bounded by IGRIS_AUDIT_STREAM_MAX_BACKLOG entries: past
it the proxy refuses new calls instead of trimming, since a trimmed entry is a lost audit record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from governance.events import AUDIT_STREAM, Actor, Envelope

log = logging.getLogger("igris.proxy.audit")

SECRET_KEY_PATTERN = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|auth(orization)?|credential|private[_-]?key|"
    r"session[_-]?id|cookie|bearer|access[_-]?key)",
    re.IGNORECASE,
)
SECRET_VALUE_PATTERN = re.compile(
    r"^(ig_[A-Za-z0-9_-]{20,}|sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|"
    r"AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{5,})$"
)
MASK = "***"
MAX_ARG_BYTES = 16 * 1024


def redact(value: Any, extra_keys: frozenset[str] = frozenset(), depth: int = 0) -> Any:
    """Mask values under secret-looking keys and values that look like known credentials."""
    if depth > 20:
        return MASK
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            if key.lower() in extra_keys or SECRET_KEY_PATTERN.search(key):
                out[key] = MASK
            else:
                out[key] = redact(v, extra_keys, depth + 1)
        return out
    if isinstance(value, list):
        return [redact(v, extra_keys, depth + 1) for v in value]
    if isinstance(value, str) and SECRET_VALUE_PATTERN.match(value.strip()):
        return MASK
    return value


def args_digest(arguments: Any) -> str | None:
    if arguments is None:
        return None
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def bounded_arguments(arguments: Any, extra_keys: frozenset[str]) -> Any:
    if arguments is None:
        return None
    redacted = redact(arguments, extra_keys)
    encoded = json.dumps(redacted, ensure_ascii=False)
    if len(encoded) > MAX_ARG_BYTES:
        return {"_truncated": True, "_bytes": len(encoded)}
    return redacted


def build_event(
    *,
    org_id: str,
    type: str,
    actor: Actor,
    fields: dict[str, Any],
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The common envelope (governance.events.Envelope, the one shape of every audit event); the
    call's columns travel in `data`, where the audit writer lifts them into their own columns."""
    return Envelope(
        org_id=org_id, type=type, source="proxy", actor=actor, data={**(data or {}), **fields}
    ).as_dict()


class AuditUnavailable(Exception):
    pass


class BacklogGauge:
    """Whether the audit stream holds more than `limit` entries the writer has not stored yet.

    The length is sampled with XLEN at most once per `every_s` in each process, so the check adds
    no round trip to nearly every call; the price is that the bound can be overshot by what the
    processes append within one interval. While one sample is in flight, other calls use the
    previous one.
    """

    def __init__(self, limit: int, *, every_s: float = 1.0) -> None:
        self.limit = limit
        self.every_s = every_s
        self.length = 0
        self._sampled_at = -every_s

    async def full(self, hotstate: Any) -> bool:
        now = time.monotonic()
        if now - self._sampled_at >= self.every_s:
            self._sampled_at = now
            try:
                self.length = await hotstate.stream_len(AUDIT_STREAM)
            except Exception:
                # The append that follows fails closed on its own if the store is gone.
                log.warning("could not sample the audit stream's length", exc_info=True)
        return self.length > self.limit


class AuditRecorder:
    """Makes the proxy's audit events durable (`record` below): what the answer paths, the
    breakers and the anomaly detector are given instead of the proxy itself."""

    def __init__(self, *, embedded: bool, hotstate: Callable[[], Any]) -> None:
        self.embedded = embedded  # the embedded default: the database, not the stream
        self.hotstate = hotstate  # this loop's hot state (governance.runtime.hotstate.get_hotstate)

    async def record(self, event: dict[str, Any]) -> None:
        """Make `event` durable or raise AuditUnavailable."""
        await record(self.hotstate(), event, embedded=self.embedded)


async def record(hotstate: Any, event: dict[str, Any], *, embedded: bool) -> None:
    """Make the event durable or raise AuditUnavailable (the caller then fails closed).

    Production appends to the Redis stream. If Redis fails between admission and this record
    (the call may already have reached the upstream), the event goes to the database outbox
    instead, which the audit writer also drains into the chain: a forwarded call is recorded
    unless both stores are down at once.
    """
    if not embedded:
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
        try:
            await hotstate.stream_append(AUDIT_STREAM, {"event": payload})
            return
        except Exception as exc:
            stream_error: Exception = exc
        log.warning("audit stream unavailable (%s); recording in the database outbox", stream_error)
    try:
        await _record_db(event)
    except Exception as exc:
        raise AuditUnavailable(str(exc)) from exc


async def _record_db(event: dict[str, Any]) -> None:
    from asgiref.sync import sync_to_async

    def write() -> None:
        from governance.models import PendingEvent

        PendingEvent.objects.create(org_id=event["org_id"], payload=event)

    await sync_to_async(write, thread_sensitive=True)()
