"""Bridges for synchronous code (services, on_commit callbacks, Celery tasks).

The process-wide async instance belongs to its event loop. With Redis, sync callers use a
short-lived connection of their own. In the embedded default (memory backend, one process), the
change is handed to the web process's loop, registered at startup.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from governance.runtime.hotstate.base import RateCheck, RateResult

log = logging.getLogger("igris.hotstate")

_loop: asyncio.AbstractEventLoop | None = None


def register_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the web process at startup so sync code can reach the memory backend."""
    global _loop
    _loop = loop


async def _apply(hs: Any, key: str, value: str | None, ttl_s: float | None) -> None:
    if value is None:
        await hs.delete_flag(key)
    else:
        await hs.set_flag(key, value, ttl_s=ttl_s)


def _run_outside_loop(factory: Any) -> None:
    """asyncio.run, or on a helper thread when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(factory())
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(factory())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="igris-flag-publish")
    thread.start()
    thread.join(timeout=10)
    if errors:
        raise errors[0]


def publish_flag_sync(key: str, value: str | None, *, ttl_s: float | None = None) -> bool:
    """Set (or delete, with None) a flag and notify every process. Returns False on failure."""
    from django.conf import settings

    try:
        if settings.REDIS_URL:
            from governance.runtime.hotstate.redis import RedisHotState

            async def run() -> None:
                hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
                try:
                    await _apply(hs, key, value, ttl_s)
                finally:
                    await hs.close()

            _run_outside_loop(run)
            return True
        from governance.runtime.hotstate import get_hotstate

        loop = _loop
        if loop is None or loop.is_closed():
            return True  # no web process here: nothing holds in-process state to tell
        coro = _apply(get_hotstate(), key, value, ttl_s)
        if threading.current_thread() is getattr(loop, "_thread", None):
            loop.create_task(coro)
            return True
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=5)
        return True
    except Exception:
        # The cache TTLs still bound staleness; the change itself is already committed.
        log.exception("could not announce flag change %s", key)
        return False


def rate_limit_sync(check: RateCheck) -> RateResult:
    """Apply one GCRA limit from synchronous code; raises if the store cannot be reached."""
    from django.conf import settings

    results: list[RateResult] = []
    if settings.REDIS_URL:
        from governance.runtime.hotstate.redis import RedisHotState

        async def run() -> None:
            hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
            try:
                results.extend(await hs.rate_limit_many([check]))
            finally:
                await hs.close()

        _run_outside_loop(run)
        return results[0]
    from governance.runtime.hotstate import get_hotstate

    hs = get_hotstate()
    loop = _loop
    if loop is not None and not loop.is_closed() and not _running(loop):
        return asyncio.run_coroutine_threadsafe(hs.rate_limit_many([check]), loop).result(
            timeout=5
        )[0]

    # No web loop in this process (tests, commands), or called from it: a memory operation
    # never awaits, so it runs to completion on a loop of its own while the caller waits.
    async def local() -> None:
        results.extend(await hs.rate_limit_many([check]))

    _run_outside_loop(local)
    return results[0]


def _running(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def read_flags_sync(keys: list[str]) -> list[str | None]:
    """Read flags from synchronous code (the API and console show proxy state); raises if the
    store cannot be reached."""
    from django.conf import settings

    values: list[str | None] = []
    if not keys:
        return values
    if settings.REDIS_URL:
        from governance.runtime.hotstate.redis import RedisHotState

        async def run() -> None:
            hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
            try:
                values.extend(await hs.get_flags(keys))
            finally:
                await hs.close()

        _run_outside_loop(run)
        return values
    from governance.runtime.hotstate import get_hotstate

    hs = get_hotstate()
    loop = _loop
    if loop is not None and not loop.is_closed() and not _running(loop):
        return asyncio.run_coroutine_threadsafe(hs.get_flags(keys), loop).result(timeout=5)

    async def local() -> None:
        values.extend(await hs.get_flags(keys))

    _run_outside_loop(local)
    return values
