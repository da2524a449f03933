"""The one loop that follows hot-state flag notifications for a process's caches.

Each web process keeps caches that a flag invalidates: the proxy's runtime (servers, kill view,
policy snapshots) and the API key verifier. Both follow the same subscription the same way:
apply each change, and when the subscription breaks (hot state restarted or unreachable), drop
what may have gone stale and subscribe again a second later. Pub/sub is at most once, so a
notification sent during the break is lost: `on_resubscribe` lets a follower read back what it
must not miss.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from governance.runtime.hotstate import HotState

RETRY_S = 1.0


async def follow_flags(
    hotstate: Callable[[], HotState],
    on_flag: Callable[[str, str | None], None],
    *,
    on_break: Callable[[], None],
    on_resubscribe: Callable[[], Awaitable[None]] | None = None,
    name: str,
    log: logging.Logger,
) -> None:
    """Apply flag notifications until cancelled, subscribing again whenever the subscription
    breaks. `hotstate` is asked on every (re)subscription, so a replaced instance is used."""
    failures = 0
    while True:
        try:
            async with hotstate().subscribe_flags() as changes:
                if failures:
                    if on_resubscribe is not None:
                        await on_resubscribe()
                    log.info("%s subscribed again", name)
                failures = 0
                async for key, value in changes:
                    on_flag(key, value)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One traceback per outage; the retries while it lasts are one line each.
            log.log(
                logging.WARNING if failures else logging.ERROR,
                "%s failed; dropping caches and retrying in %s s",
                name,
                RETRY_S,
                exc_info=not failures,
            )
            failures += 1
            on_break()
            await asyncio.sleep(RETRY_S)
