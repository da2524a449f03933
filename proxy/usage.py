"""Usage metering: tool calls per organisation per calendar month (UTC), in hot state.

Counts are summed in memory and added to the shared counters every half second, so the hot
path pays no round trip; the billing module enforces plan quotas on these counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("igris.proxy.usage")

# Counters outlive their month long enough for invoicing to read them.
COUNTER_TTL_S = 60 * 60 * 24 * 70


def usage_key(org_id: str, when: datetime | None = None) -> str:
    month = (when or datetime.now(UTC)).strftime("%Y%m")
    return f"usage:{org_id}:{month}"


class UsageMeter:
    def __init__(self, hotstate: Callable[[], Any], interval_s: float = 0.5) -> None:
        self.hotstate = hotstate  # this loop's hot state
        self.interval_s = interval_s
        self._pending: Counter[str] = Counter()

    def count(self, org_id: str) -> None:
        self._pending[usage_key(org_id)] += 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        for key, amount in pending.items():
            try:
                await self.hotstate().incr(key, amount, ttl_s=COUNTER_TTL_S)
            except Exception:
                self._pending[key] += amount  # kept for the next attempt
                raise

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not add usage to the hot state; will retry")
