"""Redis hot state: production, shared by every web process and machine (DESIGN.md 1, 4).

Each operation is one round trip: a Lua script registered once (`register_script` sends EVALSHA
and falls back to EVAL on NOSCRIPT) or a MULTI pipeline. reference/performance.md section 4
measured why: the Python client's round trip (~0.2 ms) dominates, not Redis's work, and a GCRA
key costs 56 bytes. Clocks come from Redis `TIME` so every process agrees on one clock.

Multi-key scripts (rate_limit_many) assume a single Redis, not Redis Cluster: the keys would need
a common hash tag there.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import (
    DEFAULT_PREFIX,
    HotState,
    HotStateError,
    HotStateUnavailable,
    NoSuchGroupError,
    RateCheck,
    RateResult,
    StreamEntry,
    StreamFields,
    SubscriptionTransport,
    WindowStats,
    encode_flag_change,
    gcra_params,
    gcra_result,
    to_bytes,
)

P = ParamSpec("P")
R = TypeVar("R")

# Admission: flags first (KEYS[1..n], ARGV[1] = n, ARGV[2..n+1] = 1 for a stop flag), then, unless
# a stop flag is set, GCRA over the remaining keys, all or nothing (see base.gcra_params for the
# algorithm); with n = 0 it is plain rate limiting. Times are in microseconds from Redis TIME; the
# TAT is stored as a whole number with "%.0f" because Lua's tostring keeps only 14 significant
# digits, too few for epoch microseconds. Returns the flag values, the stop verdict and, per
# check, verdict, floor(diff) and ceil(TAT - now); Python shapes the result so both backends
# share it.
ADMIT = """
local n = tonumber(ARGV[1])
local values, stopped = {}, 0
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  values[i] = v
  if v and ARGV[1 + i] == '1' then stopped = 1 end
end
if stopped == 1 then return {values, 1, {}} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored, tentative, verdicts, diffs = {}, {}, {}, {}
local all_ok = true
local m = #KEYS - n
for j = 1, m do
  local key = KEYS[n + j]
  local base = n + 1 + 3 * (j - 1)
  local interval = tonumber(ARGV[base + 1])
  local tolerance, cost = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  if tentative[key] == nil then
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    stored[key], tentative[key] = tat, tat
  end
  local new_tat = tentative[key] + interval * cost
  local diff = now - (new_tat - tolerance)
  if diff >= -1 then
    tentative[key], verdicts[j] = new_tat, 1
  else
    verdicts[j], all_ok = 0, false
  end
  diffs[j] = diff
end
local final = stored
if all_ok then
  final = tentative
  for key, tat in pairs(tentative) do
    if tat > now then
      redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
    end
  end
end
local out = {}
for j = 1, m do
  local key = KEYS[n + j]
  out[#out+1] = verdicts[j]
  out[#out+1] = math.floor(diffs[j])
  out[#out+1] = math.ceil(final[key] - now)
end
return {values, 0, out}
"""

# Bucketed window in one hash: field = bucket number (TIME seconds // bucket_s). Old buckets are
# dropped as they fall out, so the hash holds at most `buckets` fields.
WINDOW_ADD = """
local t = redis.call('TIME')
local bucket_s, n, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local current = math.floor(tonumber(t[1]) / bucket_s)
local oldest = current - n + 1
if amount ~= 0 then
  redis.call('HINCRBY', KEYS[1], current, amount)
  redis.call('EXPIRE', KEYS[1], bucket_s * (n + 1))
end
local counts = {}
for i = 1, n do counts[i] = 0 end
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local b = tonumber(flat[i])
  if b < oldest then
    redis.call('HDEL', KEYS[1], flat[i])
  elseif b <= current then
    counts[b - oldest + 1] = tonumber(flat[i + 1])
  end
end
return counts
"""

# SET NX and announce only when it set, so a cooldown that was already running stays silent.
SET_IF_ABSENT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# A blocking XREADGROUP longer than redis-py's socket timeout (5 s by default) would be cut off
# as a timeout, so long waits are made of shorter blocking reads.
BLOCK_CHUNK_MS = 2000


def _ms(ttl_s: float) -> int:
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    return max(1, math.ceil(ttl_s * 1000))


def _translated(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn redis-py errors into the backend-neutral ones callers handle (fail closed)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise HotStateUnavailable(str(exc)) from exc
        except ResponseError as exc:
            if str(exc).startswith("NOGROUP"):
                raise NoSuchGroupError(str(exc)) from exc
            raise

    return wrapper


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _payload(fields: StreamFields) -> dict[Any, Any]:
    return dict(fields)  # redis-py's stubs want a dict keyed by any encodable type


def _entries(raw: Any) -> list[StreamEntry]:
    """(id, {field: value}) pairs from redis-py's stream replies, decoding ids and field names."""
    return [
        (entry_id.decode(), {k.decode(): v for k, v in fields.items()})
        for entry_id, fields in raw or ()
        if fields is not None
    ]


class _RedisTransport:
    def __init__(self, client: aioredis.Redis, channels: list[str]) -> None:
        self._client = client
        self._channels = channels
        self._pubsub: Any = None
        self._early: list[tuple[str, bytes]] = []

    @_translated
    async def start(self) -> None:
        self._pubsub = pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*self._channels)
            # SUBSCRIBE is only in effect once Redis confirms it; waiting here is what lets the
            # caller publish right after entering without losing the message.
            waiting = set(self._channels)
            async with asyncio.timeout(10):
                while waiting:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        waiting.discard(message["channel"].decode())
                    elif message["type"] == "message":
                        self._early.append((message["channel"].decode(), message["data"]))
        except BaseException:
            await self.close()  # the caller never got a subscription to leave, so free it here
            raise

    @_translated
    async def receive(self) -> tuple[str, bytes]:
        if self._early:
            return self._early.pop(0)
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                raise HotStateError("subscription closed")
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None and message["type"] == "message":
                return message["channel"].decode(), message["data"]

    async def close(self) -> None:
        if self._pubsub is not None:
            # aclose drops the dedicated connection, which ends the subscription server-side.
            await self._pubsub.aclose()
            self._pubsub = None


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


class RedisHotState(HotState):
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

    # --- streams ---

    @_translated
    async def stream_append(
        self, stream: str, fields: StreamFields, *, maxlen: int | None = None
    ) -> str:
        # Exact MAXLEN (not "~") so both backends keep the same entries.
        entry_id = await self.redis.xadd(
            self._key("stream", stream), _payload(fields), maxlen=maxlen, approximate=False
        )
        return _text(entry_id)

    @_translated
    async def stream_append_many(
        self, stream: str, entries: Sequence[StreamFields], *, maxlen: int | None = None
    ) -> list[str]:
        if not entries:
            return []
        full = self._key("stream", stream)
        # MULTI makes the batch all-or-nothing: a batch of audit events is durable as a whole.
        async with self.redis.pipeline(transaction=True) as pipe:
            for fields in entries:
                pipe.xadd(full, _payload(fields), maxlen=maxlen, approximate=False)
            ids = await pipe.execute()
        return [_text(entry_id) for entry_id in ids]

    @_translated
    async def stream_ensure_group(self, stream: str, group: str, *, start_id: str = "0") -> None:
        try:
            await self.redis.xgroup_create(
                self._key("stream", stream), group, id=start_id, mkstream=True
            )
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    @_translated
    async def stream_read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[StreamEntry]:
        full = self._key("stream", stream)
        loop = asyncio.get_running_loop()
        deadline = None if not block_ms else loop.time() + block_ms / 1000
        while True:
            block = None
            if block_ms is not None:
                left = BLOCK_CHUNK_MS if deadline is None else (deadline - loop.time()) * 1000
                block = max(1, min(BLOCK_CHUNK_MS, math.ceil(left)))
            raw = await self.redis.xreadgroup(
                group, consumer, {full: ">"}, count=count, block=block
            )
            # RESP2 gives [[stream, entries]], RESP3 {stream: entries}; one stream either way.
            replies = list(raw.values()) if isinstance(raw, dict) else [r[1] for r in raw or ()]
            entries = _entries(replies[0]) if replies else []
            if entries or block is None:
                return entries
            if deadline is not None and loop.time() >= deadline:
                return []

    @_translated
    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.redis.xack(self._key("stream", stream), group, *ids))

    @_translated
    async def stream_delete(self, stream: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.redis.xdel(self._key("stream", stream), *ids))

    @_translated
    async def stream_ack_delete(self, stream: str, group: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        full = self._key("stream", stream)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(full, group, *ids)
            pipe.xdel(full, *ids)
            await pipe.execute()

    @_translated
    async def stream_pending_claim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[StreamEntry]:
        # XAUTOCLAIM (Redis 6.2+): the way a restarted audit writer takes over what a dead
        # consumer read but never acknowledged.
        reply = await self.redis.xautoclaim(
            self._key("stream", stream), group, consumer, min_idle_ms, start_id="0-0", count=count
        )
        return _entries(reply[1])

    @_translated
    async def stream_len(self, stream: str) -> int:
        return int(await self.redis.xlen(self._key("stream", stream)))

    @_translated
    async def stream_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[StreamEntry]:
        return _entries(await self.redis.xrange(self._key("stream", stream), start, end, count))

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
