"""The Redis hot state's connection pool: a bounded pool whose exhausted commands queue."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError

# Connections per process. Past it a command waits up to POOL_WAIT_S for one to come free
# instead of failing at once, so a burst of a few thousand concurrent calls queues for a few
# milliseconds rather than being refused as a state-store outage.
DEFAULT_MAX_CONNECTIONS = 256
POOL_WAIT_S = 5.0


class _QueueingPool(aioredis.ConnectionPool):
    """redis-py's plain pool, which fails at once when every connection is in use, plus a wait
    for a released one. Its blocking pool waits too, but takes a condition lock and a timeout on
    every command, which measured about 7% of the proxy's CPU; here only a command that finds
    the pool exhausted pays for waiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + POOL_WAIT_S
        while True:
            try:
                return await super().get_connection()
            except MaxConnectionsError:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise
                turn: asyncio.Future[None] = loop.create_future()
                self._waiters.append(turn)
                try:
                    await asyncio.wait_for(turn, remaining)
                except TimeoutError:
                    raise MaxConnectionsError(
                        f"no Redis connection came free within {POOL_WAIT_S:g} s"
                    ) from None
                finally:
                    if not turn.done():
                        turn.cancel()

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        # First come, first served: wake the oldest waiter still waiting.
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                break
