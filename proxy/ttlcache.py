"""A small in-process cache of values loaded from the database, for the proxy's hot path."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError

log = logging.getLogger("igris.proxy")

# After a refresh failed on a database error, the next attempt for that key waits this long.
STALE_RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class _Cached:
    value: Any
    loaded_at: float
    fresh_until: float


class TtlCache:
    """Loaded values kept `ttl_s`, one load at a time per key. Bounded: a client naming many
    unknown servers must not grow it without limit, so past `max_entries` it starts over.

    Serve stale on database errors: when a refresh fails because PostgreSQL cannot be reached,
    the last loaded value keeps being served until it is `max_stale_s` old (the proxy keeps
    working through a database outage; IGRIS_PROXY_MAX_STALE_S), and while one refresh is in
    flight other callers get that value instead of queueing behind a hanging connect. A value
    dropped by a change notification is never served stale.
    """

    def __init__(
        self, ttl_s: float, max_entries: int = 20_000, *, max_stale_s: float | None = None
    ) -> None:
        from django.conf import settings

        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_stale_s = (
            float(settings.IGRIS_PROXY_MAX_STALE_S) if max_stale_s is None else max_stale_s
        )
        self._data: dict[Any, _Cached] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    def drop(self, predicate: Any = None) -> None:
        if predicate is None:
            self._data.clear()
            return
        for key in [k for k in self._data if predicate(k)]:
            self._data.pop(key, None)

    def _usable(self, hit: _Cached, now: float) -> bool:
        return now - hit.loaded_at <= self.max_stale_s

    async def get(self, key: Any, loader: Any, *args: Any) -> Any:
        hit = self._data.get(key)
        now = time.monotonic()
        if hit is not None and now < hit.fresh_until:
            return hit.value
        lock = self._locks.setdefault(key, asyncio.Lock())
        if hit is not None and lock.locked() and self._usable(hit, now):
            return hit.value
        try:
            async with lock:
                hit = self._data.get(key)
                now = time.monotonic()
                if hit is not None and now < hit.fresh_until:
                    return hit.value
                try:
                    value = await sync_to_async(loader, thread_sensitive=False)(*args)
                except (OperationalError, InterfaceError):
                    if hit is None or not self._usable(hit, now):
                        raise
                    log.warning(
                        "database unavailable; serving a cached value loaded %.0f s ago",
                        now - hit.loaded_at,
                    )
                    retry_at = now + min(self.ttl_s, STALE_RETRY_S)
                    self._data[key] = _Cached(hit.value, hit.loaded_at, retry_at)
                    return hit.value
                if len(self._data) >= self.max_entries:
                    self._data.clear()
                now = time.monotonic()
                self._data[key] = _Cached(value, now, now + self.ttl_s)
                return value
        finally:
            if not lock.locked():
                self._locks.pop(key, None)
