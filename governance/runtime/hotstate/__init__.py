"""Hot state: one small async interface, a Redis and an in-process backend (DESIGN.md section 4).

`get_hotstate()` returns the running event loop's instance: Redis when `settings.REDIS_URL` is
set (the production shape, shared by every process), otherwise in-process memory (the embedded
default); keys are namespaced by `settings.IGRIS_HOTSTATE_PREFIX`.

redis.asyncio connections (their futures, locks and transports) belong to the loop that opened
them, and one used from another loop fails with "attached to a different loop". A process that
runs more than one loop (a test server in a thread beside the test's own loop, a Celery task's
`asyncio.run`, a helper thread) therefore gets one Redis client per loop, forgotten with its
loop. The memory backend is the embedded default's single store: every loop of the process
shares it, since splitting it would split the state itself.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

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
    "install_hotstate",
    "reset_hotstate",
]

# Per event loop; a loop that is garbage-collected drops its entry. The last hit is kept beside
# the mapping so the hot path pays one identity check, not a weak-dictionary lookup, per call.
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HotState] = (
    weakref.WeakKeyDictionary()
)
_shared: HotState | None = None  # the memory backend, shared by every loop of the process
_last: tuple[asyncio.AbstractEventLoop | None, HotState | None] = (None, None)
_lock = threading.Lock()


def _build() -> HotState:
    # Imported here so the backends, and anything importing this package for its types, never
    # need Django configured.
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", "") or ""
    prefix = getattr(settings, "IGRIS_HOTSTATE_PREFIX", DEFAULT_PREFIX)
    size = getattr(settings, "IGRIS_REDIS_MAX_CONNECTIONS", None)
    return RedisHotState(url, prefix, max_connections=size) if url else MemoryHotState(prefix)


def _uses_redis() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "REDIS_URL", "") or "")


def get_hotstate() -> HotState:
    """The hot state of the running event loop (or of the process, for the memory backend).

    With Redis it must be called inside a running loop: synchronous code goes through
    `governance.runtime.hotstate.sync`, which opens a short-lived client of its own."""
    global _last, _shared
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    last_loop, last = _last
    if loop is not None and loop is last_loop and last is not None:
        return last
    with _lock:
        instance = _per_loop.get(loop) if loop is not None else None
        if instance is None:
            if not _uses_redis():
                if _shared is None:
                    _shared = _build()
                instance = _shared
            elif loop is None:
                raise RuntimeError(
                    "the Redis hot state belongs to an event loop: call get_hotstate() inside "
                    "one, or use governance.runtime.hotstate.sync from synchronous code"
                )
            else:
                instance = _per_loop[loop] = _build()
        if loop is not None:
            _last = (loop, instance)
    return instance


async def close_hotstate() -> None:
    """Close and forget this loop's instance (ASGI lifespan shutdown, the writer's exit), or the
    shared memory instance. Other loops' clients are left alone: they are still serving."""
    global _last, _shared
    loop = asyncio.get_running_loop()
    with _lock:
        instance = _per_loop.pop(loop, None)
        if instance is None and _shared is not None:
            instance, _shared = _shared, None
        if _last[0] is loop or _last[1] is instance:
            _last = (None, None)
    if instance is not None:
        await instance.close()


def install_hotstate(instance: HotState) -> None:
    """Make `instance` the running loop's hot state (a test that picks the backend, or code that
    builds its own client); `close_hotstate()` or `reset_hotstate()` forgets it."""
    global _last
    loop = asyncio.get_running_loop()
    with _lock:
        _per_loop[loop] = instance
        _last = (loop, instance)


def reset_hotstate() -> None:
    """Forget every instance without closing it, so the next use builds a new one from the
    current settings (tests that switch between Redis and memory, or change the prefix)."""
    global _last, _shared
    with _lock:
        _per_loop.clear()
        _shared = None
        _last = (None, None)
