"""In-process hot state: the embedded default (`make run`, no outside services; DESIGN.md 1, 4).

One process, one event loop. Every operation runs to completion without awaiting, so each is
atomic under asyncio concurrency, the same guarantee a Lua script gives in Redis. TTLs and GCRA
use the monotonic clock (a wall-clock jump must not refill or freeze a limit); stream ids use wall
time in milliseconds like Redis, kept strictly increasing. Expired keys are purged lazily on
access and, through a heap of deadlines, on every write, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import (
    DEFAULT_PREFIX,
    GCRA_EPSILON_S,
    HotState,
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

StreamId = tuple[int, int]
_MAX_SEQ = 2**64 - 1
# A subscriber that stops reading loses its oldest messages instead of growing without bound
# (Redis disconnects it at client-output-buffer-limit pubsub for the same reason).
SUBSCRIBER_QUEUE_SIZE = 10_000


def _parse_id(raw: str, *, default_seq: int) -> StreamId:
    ms, sep, seq = raw.partition("-")
    return int(ms), int(seq) if sep else default_seq


def _format_id(entry_id: StreamId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


@dataclass
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int = 1


@dataclass
class _Group:
    last_delivered: StreamId
    pending: dict[StreamId, _Pending] = field(default_factory=dict)


@dataclass
class _Stream:
    ids: list[StreamId] = field(default_factory=list)
    entries: list[dict[str, bytes]] = field(default_factory=list)
    last_id: StreamId = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)
    appended: asyncio.Event | None = None  # created by a blocked reader, set by the next append

    def append(self, fields: dict[str, bytes], maxlen: int | None) -> str:
        ms = int(time.time() * 1000)
        # Redis ids never go backwards even if the wall clock does.
        self.last_id = (ms, 0) if ms > self.last_id[0] else (self.last_id[0], self.last_id[1] + 1)
        self.ids.append(self.last_id)
        self.entries.append(fields)
        if maxlen is not None and len(self.ids) > maxlen:
            drop = len(self.ids) - maxlen
            del self.ids[:drop], self.entries[:drop]
        if self.appended is not None:
            self.appended.set()
            self.appended = None
        return _format_id(self.last_id)

    def entry(self, entry_id: StreamId) -> dict[str, bytes] | None:
        index = bisect_left(self.ids, entry_id)
        if index < len(self.ids) and self.ids[index] == entry_id:
            return self.entries[index]
        return None


class _MemoryTransport:
    def __init__(self, store: MemoryStore, channels: list[str]) -> None:
        self._store = store
        self._channels = channels
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)

    async def start(self) -> None:
        for channel in self._channels:
            self._store.subscribers.setdefault(channel, set()).add(self)

    async def receive(self) -> tuple[str, bytes]:
        return await self._queue.get()

    async def close(self) -> None:
        for channel in self._channels:
            subscribers = self._store.subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(self)
                if not subscribers:
                    del self._store.subscribers[channel]
        self.deliver("", b"")  # wakes a reader still waiting so it can see the close

    def deliver(self, channel: str, data: bytes) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait((channel, data))


class MemoryStore:
    """The data behind one or more MemoryHotState views (several prefixes may share a store)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.expires: dict[str, float] = {}
        self._deadlines: list[tuple[float, str]] = []
        self.streams: dict[str, _Stream] = {}
        self.subscribers: dict[str, set[_MemoryTransport]] = {}

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def get(self, key: str, now: float) -> Any:
        deadline = self.expires.get(key)
        if deadline is not None and deadline <= now:
            self._drop(key)
            return None
        return self.values.get(key)

    def put(self, key: str, value: Any, now: float, ttl_s: float | None = None) -> None:
        """Store a value; `ttl_s` None keeps the key's current expiry, like INCRBY or HINCRBY."""
        self.purge(now)
        self.values[key] = value
        if ttl_s is not None:
            self.expire(key, now + ttl_s)

    def expire(self, key: str, deadline: float) -> None:
        self.expires[key] = deadline
        heapq.heappush(self._deadlines, (deadline, key))
        # Re-setting a TTL leaves stale heap entries (GCRA does it on every call); rebuild from
        # the live deadlines once they dominate, so the heap stays O(keys with a TTL).
        if len(self._deadlines) > 2 * len(self.expires) + 64:
            self._deadlines = [(d, k) for k, d in self.expires.items()]
            heapq.heapify(self._deadlines)

    def delete(self, key: str) -> bool:
        existed = key in self.values and self.get(key, self.now()) is not None
        self._drop(key)
        return existed

    def purge(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self._deadlines)
            if self.expires.get(key) == deadline:
                self._drop(key)

    def _drop(self, key: str) -> None:
        self.values.pop(key, None)
        self.expires.pop(key, None)

    def live_keys(self) -> list[str]:
        """Live keys, for tests and debugging."""
        now = self.now()
        live = [k for k in list(self.values) if self.get(k, now) is not None]
        return live + list(self.streams)

    def publish(self, channel: str, data: bytes) -> None:
        for transport in list(self.subscribers.get(channel, ())):
            transport.deliver(channel, data)


class MemoryHotState(HotState):
    def __init__(self, prefix: str = DEFAULT_PREFIX, *, store: MemoryStore | None = None) -> None:
        super().__init__(prefix)
        self.store = store if store is not None else MemoryStore()

    # --- rate limiting (GCRA, see base.gcra_params) ---

    async def admit(
        self, flag_keys: Sequence[str], checks: Sequence[RateCheck], *, stop_prefix: str = "kill:"
    ) -> tuple[list[str | None], list[RateResult] | None]:
        values = await self.get_flags(flag_keys)
        if any(
            v is not None and k.startswith(stop_prefix)
            for k, v in zip(flag_keys, values, strict=True)
        ):
            return values, None
        return values, await self.rate_limit_many(checks)

    async def rate_limit_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        params = [gcra_params(check) for check in checks]
        now = self.store.now()
        stored: dict[str, float] = {}
        tentative: dict[str, float] = {}
        verdicts: list[tuple[bool, float]] = []
        for p in params:
            key = self._key("rl", p.key)
            if key not in tentative:
                tat = self.store.get(key, now)
                stored[key] = tentative[key] = now if tat is None else max(tat, now)
            new_tat = tentative[key] + p.interval_s * p.cost
            diff = now - (new_tat - p.tolerance_s)
            allowed = diff >= -GCRA_EPSILON_S
            if allowed:
                tentative[key] = new_tat
            verdicts.append((allowed, diff))
        # All or nothing: a call that one limit refuses must not use up the others.
        final = tentative if all(ok for ok, _ in verdicts) else stored
        if final is tentative:
            for key, tat in tentative.items():
                if tat > now:
                    self.store.put(key, tat, now, ttl_s=tat - now)
        return [
            gcra_result(
                allowed=ok,
                tat=final[self._key("rl", p.key)],
                now=now,
                interval=p.interval_s,
                tolerance=p.tolerance_s,
                diff=diff,
            )
            for p, (ok, diff) in zip(params, verdicts, strict=True)
        ]

    # --- counters ---

    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        full, now = self._key("cnt", key), self.store.now()
        value = int(self.store.get(full, now) or 0) + amount
        self.store.put(full, value, now)
        if ttl_s is not None and full not in self.store.expires:
            self.store.expire(full, now + ttl_s)
        return value

    async def get_counter(self, key: str) -> int:
        return int(self.store.get(self._key("cnt", key), self.store.now()) or 0)

    async def window_add(
        self, key: str, *, bucket_s: int, buckets: int, amount: int = 1
    ) -> WindowStats:
        full, now = self._key("win", key), self.store.now()
        current = math.floor(now / bucket_s)
        oldest = current - buckets + 1
        counts: dict[int, int] = self.store.get(full, now) or {}
        if amount:
            counts[current] = counts.get(current, 0) + amount
        counts = {b: n for b, n in counts.items() if b >= oldest}
        if counts:
            self.store.put(full, counts, now, ttl_s=bucket_s * (buckets + 1))
        series = [counts.get(b, 0) for b in range(oldest, current + 1)]
        return WindowStats(current=series[-1], total=sum(series), buckets=series)

    # --- flags ---

    async def set_flag(self, key: str, value: str, *, ttl_s: float | None = None) -> None:
        full, now = self._key("flag", key), self.store.now()
        self.store.delete(full)  # SET without KEEPTTL drops the old expiry
        self.store.put(full, value, now, ttl_s=ttl_s)
        self.store.publish(self._flag_channel(), encode_flag_change(key, value))

    async def get_flag(self, key: str) -> str | None:
        value = self.store.get(self._key("flag", key), self.store.now())
        return None if value is None else str(value)

    async def get_flags(self, keys: Sequence[str]) -> list[str | None]:
        return [await self.get_flag(key) for key in keys]

    async def delete_flag(self, key: str) -> None:
        self.store.delete(self._key("flag", key))
        self.store.publish(self._flag_channel(), encode_flag_change(key, None))

    async def set_if_absent(self, key: str, value: str, ttl_s: float) -> bool:
        full, now = self._key("flag", key), self.store.now()
        if self.store.get(full, now) is not None:
            return False
        self.store.put(full, value, now, ttl_s=ttl_s)
        self.store.publish(self._flag_channel(), encode_flag_change(key, value))
        return True

    # --- streams ---

    async def stream_append(
        self, stream: str, fields: StreamFields, *, maxlen: int | None = None
    ) -> str:
        data = {name: to_bytes(value) for name, value in fields.items()}
        return self.store.streams.setdefault(self._key("stream", stream), _Stream()).append(
            data, maxlen
        )

    async def stream_append_many(
        self, stream: str, entries: Sequence[StreamFields], *, maxlen: int | None = None
    ) -> list[str]:
        return [await self.stream_append(stream, fields, maxlen=maxlen) for fields in entries]

    async def stream_ensure_group(self, stream: str, group: str, *, start_id: str = "0") -> None:
        data = self.store.streams.setdefault(self._key("stream", stream), _Stream())
        if group not in data.groups:
            start = data.last_id if start_id == "$" else _parse_id(start_id, default_seq=0)
            data.groups[group] = _Group(last_delivered=start)

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        data = self.store.streams.get(self._key("stream", stream))
        if data is None or group not in data.groups:
            raise NoSuchGroupError(f"no consumer group {group!r} on stream {stream!r}")
        return data, data.groups[group]

    async def stream_read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[StreamEntry]:
        loop = asyncio.get_running_loop()
        deadline = None if not block_ms else loop.time() + block_ms / 1000
        while True:
            data, state = self._group(stream, group)
            start = bisect_right(data.ids, state.last_delivered)
            fresh = data.ids[start : start + count]
            if fresh or block_ms is None:
                break
            if data.appended is None:
                data.appended = asyncio.Event()
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                return []
            try:
                await asyncio.wait_for(data.appended.wait(), timeout)
            except TimeoutError:
                return []
        now = self.store.now()
        result: list[StreamEntry] = []
        for offset, entry_id in enumerate(fresh):
            state.pending[entry_id] = _Pending(consumer, now)
            result.append((_format_id(entry_id), dict(data.entries[start + offset])))
        if fresh:
            state.last_delivered = fresh[-1]
        return result

    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        data = self.store.streams.get(self._key("stream", stream))
        state = None if data is None else data.groups.get(group)
        if state is None:
            return 0  # XACK on a missing group acknowledges nothing rather than failing
        return sum(state.pending.pop(_parse_id(i, default_seq=0), None) is not None for i in ids)

    async def stream_delete(self, stream: str, ids: Sequence[str]) -> int:
        data = self.store.streams.get(self._key("stream", stream))
        if data is None:
            return 0
        deleted = 0
        for raw in ids:
            entry_id = _parse_id(raw, default_seq=0)
            index = bisect_left(data.ids, entry_id)
            if index < len(data.ids) and data.ids[index] == entry_id:
                del data.ids[index], data.entries[index]
                deleted += 1
        return deleted

    async def stream_pending_claim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[StreamEntry]:
        data, state = self._group(stream, group)
        now = self.store.now()
        claimed: list[StreamEntry] = []
        for entry_id in sorted(state.pending):
            if len(claimed) >= count:
                break
            pending = state.pending[entry_id]
            if (now - pending.delivered_at) * 1000 < min_idle_ms:
                continue
            fields = data.entry(entry_id)
            if fields is None:
                del state.pending[entry_id]  # trimmed away; Redis 7 drops these from the PEL too
                continue
            pending.consumer, pending.delivered_at = consumer, now
            pending.deliveries += 1
            claimed.append((_format_id(entry_id), dict(fields)))
        return claimed

    async def stream_len(self, stream: str) -> int:
        data = self.store.streams.get(self._key("stream", stream))
        return 0 if data is None else len(data.ids)

    async def stream_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[StreamEntry]:
        data = self.store.streams.get(self._key("stream", stream))
        if data is None:
            return []
        low = bisect_left(data.ids, _range_bound(start, is_start=True))
        high = bisect_right(data.ids, _range_bound(end, is_start=False))
        if count is not None:
            high = min(high, low + count)
        return [(_format_id(data.ids[i]), dict(data.entries[i])) for i in range(low, high)]

    # --- pub/sub ---

    async def publish(self, channel: str, message: bytes | str) -> None:
        self.store.publish(self._channel(channel), to_bytes(message))

    def _transport(self, full_channels: list[str]) -> SubscriptionTransport:
        return _MemoryTransport(self.store, full_channels)

    # --- lifecycle ---

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release: the store lives as long as the process."""


def _range_bound(raw: str, *, is_start: bool) -> StreamId:
    """XRANGE bounds: "-", "+", "ms", "ms-seq" and exclusive "(ms-seq" (Redis 6.2+)."""
    if raw == "-":
        return (0, 0)
    if raw == "+":
        return (_MAX_SEQ, _MAX_SEQ)
    if raw.startswith("("):
        ms, seq = _parse_id(raw[1:], default_seq=0 if is_start else _MAX_SEQ)
        if is_start:
            return (ms, seq + 1) if seq < _MAX_SEQ else (ms + 1, 0)
        return (ms, seq - 1) if seq > 0 else (ms - 1, _MAX_SEQ)
    return _parse_id(raw, default_seq=0 if is_start else _MAX_SEQ)
