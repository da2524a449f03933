"""Hot state: one small async interface, a Redis and an in-process backend (DESIGN.md section 4).

`get_hotstate()` returns the process-wide instance: Redis when `settings.REDIS_URL` is set (the
production shape, shared by every process), otherwise in-process memory (the embedded default);
keys are namespaced by `settings.IGRIS_HOTSTATE_PREFIX`.
The instance belongs to the event loop that first uses it (redis.asyncio connections are bound
to their loop); code running its own loops, such as a Celery task calling `asyncio.run`, should
build a backend of its own and close it.
"""

from __future__ import annotations

import threading

from .base import (
    DEFAULT_PREFIX,
    HotState,
    HotStateError,
    HotStateUnavailable,
    NoSuchGroupError,
    RateCheck,
    RateResult,
    StreamEntry,
    Subscription,
    WindowStats,
)
from .memory import MemoryHotState, MemoryStore
from .redis import RedisHotState

__all__ = [
    "DEFAULT_PREFIX",
    "HotState",
    "HotStateError",
    "HotStateUnavailable",
    "MemoryHotState",
    "MemoryStore",
    "NoSuchGroupError",
    "RateCheck",
    "RateResult",
    "RedisHotState",
    "StreamEntry",
    "Subscription",
    "WindowStats",
    "close_hotstate",
    "get_hotstate",
]

_instance: HotState | None = None
_lock = threading.Lock()


def get_hotstate() -> HotState:
    """The process-wide hot state, built on first use from `settings.REDIS_URL`."""
    global _instance
    if _instance is None:
        with _lock:
            if _instance is None:
                # Imported here so the backends, and anything importing this package for its
                # types, never need Django configured.
                from django.conf import settings

                url = getattr(settings, "REDIS_URL", "") or ""
                prefix = getattr(settings, "IGRIS_HOTSTATE_PREFIX", DEFAULT_PREFIX)
                size = getattr(settings, "IGRIS_REDIS_MAX_CONNECTIONS", None)
                _instance = (
                    RedisHotState(url, prefix, max_connections=size)
                    if url
                    else MemoryHotState(prefix)
                )
    return _instance


async def close_hotstate() -> None:
    """Close and forget the process-wide instance (ASGI lifespan shutdown, tests)."""
    global _instance
    with _lock:
        instance, _instance = _instance, None
    if instance is not None:
        await instance.close()
