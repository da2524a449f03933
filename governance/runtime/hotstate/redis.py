"""Redis hot state: production, shared by every web process and machine (DESIGN.md 1, 4).

Each operation is one round trip: a Lua script registered once (`register_script` sends EVALSHA
and falls back to EVAL on NOSCRIPT) or a MULTI pipeline. reference/performance.md section 4
measured why: the Python client's round trip (~0.2 ms) dominates, not Redis's work, and a GCRA
key costs 56 bytes. Clocks come from Redis `TIME` so every process agrees on one clock.

Multi-key scripts (rate_limit_many) assume a single Redis, not Redis Cluster: the keys would need
a common hash tag there.

The backend's parts live beside this module: the Lua scripts (redis_scripts.py), the connection
pool (redis_pool.py), the stream operations RedisHotState inherits (redis_streams.py), the pub/sub
transport of subscriptions (redis_pubsub.py) and the error translation they share
(redis_common.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import (
    DEFAULT_PREFIX,
    RateCheck,
    RateResult,
    SubscriptionTransport,
    WindowStats,
    encode_flag_change,
    gcra_params,
    gcra_result,
    to_bytes,
)
from .redis_common import _text, _translated
from .redis_pool import DEFAULT_MAX_CONNECTIONS, _QueueingPool
from .redis_pubsub import _RedisTransport
from .redis_scripts import ADMIT, SET_IF_ABSENT, WINDOW_ADD
from .redis_streams import _RedisStreams


def _ms(ttl_s: float) -> int:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    return max(1, math.ceil(ttl_s * 1000))


class RedisHotState(_RedisStreams):
    def __init__(
        self, url: str, prefix: str = DEFAULT_PREFIX, *, max_connections: int | None = None
    ) -> None:
        super().__init__(prefix)
        # Bytes in, bytes out: stream payloads are binary; text is decoded where it is text.
        # One immediate retry on a broken connection: after Redis restarts every pooled
        # connection is dead, and the first command on each must not fail for that alone. An
        # outage still fails at once (the proxy fails closed), and a timeout is not retried (the
        # command may have run).
        pool = _QueueingPool.from_url(
            url,
            max_connections=max_connections or DEFAULT_MAX_CONNECTIONS,
            decode_responses=False,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self.redis.auto_close_connection_pool = True
        # Pub/sub has a client of its own that never retries: a retried read would re-subscribe
        # silently, and the messages published in between would be lost without a sign; failing
        # instead ends the subscription, and the subscriber knows to catch up.
        self._pubsub_client: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=False, retry=Retry(NoBackoff(), 0)
        )
        self._admit = self.redis.register_script(ADMIT)
        self._window = self.redis.register_script(WINDOW_ADD)
        self._set_if_absent = self.redis.register_script(SET_IF_ABSENT)

    # --- rate limiting ---

    @_translated
    async def admit(
        self, flag_keys: Sequence[str], checks: Sequence[RateCheck], *, stop_prefix: str = "kill:"
    ) -> tuple[list[str | None], list[RateResult] | None]:
        params = [gcra_params(check) for check in checks]
        args: list[str | int] = [len(flag_keys)]
        args += ["1" if key.startswith(stop_prefix) else "0" for key in flag_keys]
        for p in params:
            args += [repr(p.interval_s * 1e6), repr(p.tolerance_s * 1e6), p.cost]
        keys = [self._key("flag", key) for key in flag_keys] + [
            self._key("rl", p.key) for p in params
        ]
        raw_values, stopped, raw = await self._admit(keys=keys, args=args)
        # Lua drops trailing nils from a table: pad back to one value per flag.
        decoded = [None if v is None else v.decode() for v in raw_values]
        values = decoded + [None] * (len(flag_keys) - len(decoded))
        if stopped:
            return values, None
        return values, [
            gcra_result(
                allowed=bool(raw[3 * i]),
                tat=raw[3 * i + 2] / 1e6,
                now=0.0,
                interval=p.interval_s,
                tolerance=p.tolerance_s,
                diff=raw[3 * i + 1] / 1e6,
            )
            for i, p in enumerate(params)
        ]

    async def rate_limit_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        if not checks:
            return []
        _, results = await self.admit([], checks)
        assert results is not None  # no flags, so nothing can stop it
        return results

    # --- counters ---

    @_translated
    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        full = self._key("cnt", key)
        if ttl_s is None:
            return int(await self.redis.incrby(full, amount))
        async with self.redis.pipeline(transaction=True) as pipe:
            # PEXPIRE NX (Redis 7): only a counter without expiry gets one, so a fixed window
            # (the monthly quota) is not pushed back by every increment.
            pipe.incrby(full, amount)
            pipe.pexpire(full, _ms(ttl_s), nx=True)
            value, _ = await pipe.execute()
        return int(value)

    @_translated
    async def get_counter(self, key: str) -> int:
        value = await self.redis.get(self._key("cnt", key))
        return 0 if value is None else int(value)

    @_translated
    async def window_add(
        self, key: str, *, bucket_s: int, buckets: int, amount: int = 1
    ) -> WindowStats:
        if bucket_s < 1 or buckets < 1:
            raise ValueError("bucket_s and buckets must be at least 1")
        raw = await self._window(keys=[self._key("win", key)], args=[bucket_s, buckets, amount])
        series = [int(n) for n in raw]
        return WindowStats(current=series[-1], total=sum(series), buckets=series)

    # --- flags ---

    @_translated
    async def set_flag(self, key: str, value: str, *, ttl_s: float | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("flag", key), value, px=None if ttl_s is None else _ms(ttl_s))
            pipe.publish(self._flag_channel(), encode_flag_change(key, value))
            await pipe.execute()

    @_translated
    async def get_flag(self, key: str) -> str | None:
        value = await self.redis.get(self._key("flag", key))
        return None if value is None else _text(value)

    @_translated
    async def get_flags(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        values = await self.redis.mget([self._key("flag", key) for key in keys])
        return [None if v is None else _text(v) for v in values]

    @_translated
    async def delete_flag(self, key: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("flag", key))
            pipe.publish(self._flag_channel(), encode_flag_change(key, None))
            await pipe.execute()

    @_translated
    async def set_if_absent(self, key: str, value: str, ttl_s: float) -> bool:
        keys = [self._key("flag", key), self._flag_channel()]
        args: list[str | int | bytes] = [value, _ms(ttl_s), encode_flag_change(key, value)]
        return bool(await self._set_if_absent(keys=keys, args=args))

    # --- streams: inherited from _RedisStreams (redis_streams.py) ---

    # --- pub/sub ---

    @_translated
    async def publish(self, channel: str, message: bytes | str) -> None:
        await self.redis.publish(self._channel(channel), to_bytes(message))

    @_translated
    async def publish_many(self, messages: Sequence[tuple[str, bytes | str]]) -> None:
        if not messages:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, message in messages:
                pipe.publish(self._channel(channel), to_bytes(message))
            await pipe.execute()

    def _transport(self, full_channels: list[str]) -> SubscriptionTransport:
        return _RedisTransport(self._pubsub_client, full_channels)

    # --- lifecycle ---

    async def ping(self) -> bool:
        try:
            # A health check must answer even when Redis hangs, hence the short bound.
            async with asyncio.timeout(1.0):
                return bool(await self.redis.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        await self._pubsub_client.aclose()
        await self.redis.aclose()
