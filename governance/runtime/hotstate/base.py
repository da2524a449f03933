"""The hot-state interface shared by the Redis and in-process backends (DESIGN.md section 4).

Everything the proxy needs on its hot path that must be shared between processes lives behind
this one interface: GCRA rate limits, usage counters, bucketed anomaly windows, flags with change
notification (kill switches, snapshot invalidation), the durable audit event stream and live-feed
pub/sub. Naming, argument checks and message encoding live here so both backends cannot drift.

This module imports neither Django nor Redis: the policy engine's purity contract and the embedded
default (no outside services) both depend on that.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

DEFAULT_PREFIX = "igris:"

# Slack for float rounding in the GCRA comparison: Redis keeps the theoretical arrival time in
# whole microseconds, so a request landing exactly on the boundary must not be denied by 1e-7 s.
GCRA_EPSILON_S = 1e-6

T = TypeVar("T")

StreamFields = Mapping[str, bytes | str]
StreamEntry = tuple[str, dict[str, bytes]]


class HotStateError(Exception):
    """Base class for errors the hot state raises on purpose, whatever the backend."""


class HotStateUnavailable(HotStateError):
    """The backing store cannot be reached; the proxy fails closed on this (DESIGN.md section 3)."""


class NoSuchGroupError(HotStateError):
    """The consumer group does not exist (Redis NOGROUP); call `stream_ensure_group` first."""


@dataclass(frozen=True, slots=True)
class RateCheck:
    """One GCRA limit: `limit` requests per `period_s`, in bursts of up to `burst` (or `limit`)."""

    key: str
    limit: int
    period_s: float
    cost: int = 1
    burst: int | None = None


@dataclass(frozen=True, slots=True)
class RateResult:
    """Verdict for one limit; `remaining` and `reset_after_s` describe the state after the call.

    `retry_after_s` is 0 when allowed, else the wait until this limit would allow the same cost.
    `reset_after_s` is the wait until the limit is fully replenished (the key's TTL).
    """

    allowed: bool
    remaining: int
    retry_after_s: float
    reset_after_s: float


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Per-bucket counts, oldest first; `current` is the (partial) newest bucket."""

    current: int
    total: int
    buckets: list[int]


@dataclass(frozen=True, slots=True)
class GcraParams:
    """A RateCheck reduced to the numbers the algorithm needs, in seconds."""

    key: str
    interval_s: float
    tolerance_s: float
    cost: int


def gcra_params(check: RateCheck) -> GcraParams:
    """Validate a check and turn it into emission interval and tolerance.

    GCRA (the ATM cell-rate algorithm that redis-cell and throttled use): a request of cost c is
    allowed when now >= TAT + c*interval - tolerance, where interval = period/limit and tolerance
    = interval*burst, so a fresh key admits exactly `burst` unit requests at once.
    """
    if check.limit < 1:
        raise ValueError(f"rate limit for {check.key!r} must be at least 1, got {check.limit}")
    if not check.period_s > 0:
        raise ValueError(f"rate period for {check.key!r} must be positive, got {check.period_s}")
    burst = check.limit if check.burst is None else check.burst
    if burst < 1:
        raise ValueError(f"burst for {check.key!r} must be at least 1, got {burst}")
    if check.cost < 0:
        raise ValueError(f"cost for {check.key!r} must not be negative, got {check.cost}")
    if check.cost > burst:
        # Such a request could never pass; refusing loudly beats denying it forever.
        raise ValueError(f"cost {check.cost} exceeds the burst {burst} of {check.key!r}")
    interval = check.period_s / check.limit
    return GcraParams(check.key, interval, interval * burst, check.cost)


def gcra_result(
    *, allowed: bool, tat: float, now: float, interval: float, tolerance: float, diff: float
) -> RateResult:
    """Shape a verdict from the TAT left after the call (both backends use this arithmetic)."""
    remaining = max(0, math.floor((now + tolerance - tat + GCRA_EPSILON_S) / interval))
    return RateResult(
        allowed=allowed,
        remaining=remaining,
        retry_after_s=0.0 if allowed else max(0.0, -diff),
        reset_after_s=max(0.0, tat - now),
    )


def encode_flag_change(key: str, value: str | None) -> bytes:
    return json.dumps({"key": key, "value": value}, separators=(",", ":")).encode()


def decode_flag_change(data: bytes) -> tuple[str, str | None] | None:
    try:
        payload = json.loads(data)
        return str(payload["key"]), payload["value"]
    except (ValueError, KeyError, TypeError):
        return None  # not ours (someone published by hand); skipping beats killing the listener


def to_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class SubscriptionTransport(Protocol):
    """What a backend provides for one subscription: full (prefixed) channel names and bytes."""

    async def start(self) -> None: ...

    async def receive(self) -> tuple[str, bytes]: ...

    async def close(self) -> None: ...


class Subscription(Generic[T]):
    """`async with hs.subscribe("feed") as sub: async for channel, message in sub: ...`

    Entering returns only once the backend has confirmed the subscription, so a message published
    after `__aenter__` is never missed. Leaving unsubscribes and frees the connection. Pub/sub is
    at-most-once in both backends; durable delivery is the stream's job.
    """

    def __init__(
        self, transport: SubscriptionTransport, decode: Callable[[str, bytes], T | None]
    ) -> None:
        self._transport = transport
        self._decode = decode
        self._state = "new"

    async def __aenter__(self) -> Subscription[T]:
        await self._ensure_started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        await self._ensure_started()
        while self._state == "open":
            try:
                channel, data = await self._transport.receive()
            except HotStateError:
                if self._state == "open":
                    raise
                break  # closed from another task while waiting (a killed session's feed)
            if self._state != "open":
                break
            item = self._decode(channel, data)
            if item is not None:
                return item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._state == "open":
            self._state = "closed"
            await self._transport.close()
        self._state = "closed"

    async def _ensure_started(self) -> None:
        if self._state == "closed":
            raise HotStateError("this subscription is closed")
        if self._state == "new":
            await self._transport.start()
            self._state = "open"


class HotState(abc.ABC):
    """Shared, fast, non-relational state. All keys and channels are namespaced by `prefix`."""

    FLAG_CHANNEL = "flag-changes"

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix

    # Naming is the base class's job so both backends lay keys out identically.
    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{key}"

    def _channel(self, name: str) -> str:
        return f"{self.prefix}ch:{name}"

    def _flag_channel(self) -> str:
        return f"{self.prefix}{self.FLAG_CHANNEL}"

    # --- rate limiting (GCRA) ---

    async def rate_limit(
        self, key: str, *, limit: int, period_s: float, cost: int = 1, burst: int | None = None
    ) -> RateResult:
        results = await self.rate_limit_many([RateCheck(key, limit, period_s, cost, burst)])
        return results[0]

    @abc.abstractmethod
    async def rate_limit_many(self, checks: Sequence[RateCheck]) -> list[RateResult]:
        """Evaluate all limits atomically; consume from every one only if every one allows."""

    # --- counters ---

    @abc.abstractmethod
    async def admit(
        self, flag_keys: Sequence[str], checks: Sequence[RateCheck], *, stop_prefix: str = "kill:"
    ) -> tuple[list[str | None], list[RateResult] | None]:
        """The proxy's admission in one round trip: read `flag_keys`; unless a flag whose key
        starts with `stop_prefix` is set, apply `checks` as `rate_limit_many` does. Returns the
        flag values and the rate results (None when stopped: nothing is consumed)."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        """Add to a counter; `ttl_s` applies when the counter has no expiry yet (fixed window)."""

    @abc.abstractmethod
    async def get_counter(self, key: str) -> int: ...

    @abc.abstractmethod
    async def window_add(
        self, key: str, *, bucket_s: int, buckets: int, amount: int = 1
    ) -> WindowStats:
        """Add to the current bucket and return the last `buckets` buckets (amount=0 reads)."""

    # --- flags ---

    @abc.abstractmethod
    async def set_flag(self, key: str, value: str, *, ttl_s: float | None = None) -> None: ...

    @abc.abstractmethod
    async def get_flag(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def get_flags(self, keys: Sequence[str]) -> list[str | None]: ...

    @abc.abstractmethod
    async def delete_flag(self, key: str) -> None: ...

    @abc.abstractmethod
    async def set_if_absent(self, key: str, value: str, ttl_s: float) -> bool:
        """Set a flag only if it is unset (cooldowns); announces the change only if it set it."""

    def subscribe_flags(self) -> Subscription[tuple[str, str | None]]:
        """Changes made by set_flag/delete_flag/set_if_absent in any process: (key, value|None).

        Expiry is not announced: a flag with a TTL is expected to be read, not watched.
        """
        return Subscription(
            self._transport([self._flag_channel()]), lambda _c, data: decode_flag_change(data)
        )

    # --- streams ---

    @abc.abstractmethod
    async def stream_append(
        self, stream: str, fields: StreamFields, *, maxlen: int | None = None
    ) -> str:
        """Append one entry and return its id; `maxlen` trims exactly to the newest entries."""

    @abc.abstractmethod
    async def stream_append_many(
        self, stream: str, entries: Sequence[StreamFields], *, maxlen: int | None = None
    ) -> list[str]: ...

    @abc.abstractmethod
    async def stream_ensure_group(self, stream: str, group: str, *, start_id: str = "0") -> None:
        """Create the group (and the stream) if missing; `start_id="0"` replays existing entries."""

    @abc.abstractmethod
    async def stream_read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[StreamEntry]:
        """New entries for this group; `block_ms` None returns at once, 0 waits forever."""

    @abc.abstractmethod
    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int: ...

    @abc.abstractmethod
    async def stream_delete(self, stream: str, ids: Sequence[str]) -> int:
        """XDEL: drop entries every consumer is done with (the audit writer, after commit and
        ack), so the stream does not grow without bound."""

    async def stream_ack_delete(self, stream: str, group: str, ids: Sequence[str]) -> None:
        """Acknowledge and delete entries the group is done with; Redis does both in one MULTI,
        so a crash never leaves an acknowledged entry behind in the stream."""
        await self.stream_ack(stream, group, ids)
        await self.stream_delete(stream, ids)

    @abc.abstractmethod
    async def stream_pending_claim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[StreamEntry]:
        """Take over entries delivered but unacked for at least `min_idle_ms` (XAUTOCLAIM)."""

    @abc.abstractmethod
    async def stream_len(self, stream: str) -> int: ...

    @abc.abstractmethod
    async def stream_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[StreamEntry]: ...

    # --- pub/sub ---

    @abc.abstractmethod
    async def publish(self, channel: str, message: bytes | str) -> None: ...

    async def publish_many(self, messages: Sequence[tuple[str, bytes | str]]) -> None:
        """Publish several (channel, message) pairs in order; one round trip on Redis."""
        for channel, message in messages:
            await self.publish(channel, message)

    def subscribe(self, *channels: str) -> Subscription[tuple[str, bytes]]:
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        names = {self._channel(c): c for c in channels}
        return Subscription(self._transport(list(names)), lambda c, data: (names.get(c, c), data))

    @abc.abstractmethod
    def _transport(self, full_channels: list[str]) -> SubscriptionTransport: ...

    # --- lifecycle ---

    @abc.abstractmethod
    async def ping(self) -> bool: ...

    @abc.abstractmethod
    async def close(self) -> None: ...
