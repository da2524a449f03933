"""Contract tests for the hot state: every test runs against both backends (DESIGN.md section 4).

Redis is the machine's real server, database 15, with a random prefix per test; only that
prefix's keys are deleted afterwards (never FLUSHDB). "Another process" is a second instance on
the same store: a second RedisHotState with its own connection pool, or a second MemoryHotState
view of the same MemoryStore. No assertion is about speed; waits are bounded.
"""

from __future__ import annotations

import asyncio
import fnmatch
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis

import governance.runtime.hotstate as hotstate_module
from governance.runtime.hotstate import (
    HotState,
    HotStateError,
    HotStateUnavailable,
    MemoryHotState,
    MemoryStore,
    NoSuchGroupError,
    RateCheck,
    RedisHotState,
)

REDIS_URL = "redis://127.0.0.1:6379/15"
WAIT_S = 3.0


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    """Overrides the conftest's Django cache cleanup: these tests never touch Django's cache and
    run without Django configured (`-p no:django`)."""


@dataclass
class Backend:
    kind: str
    prefix: str
    store: MemoryStore = field(default_factory=MemoryStore)
    raw: aioredis.Redis | None = None
    made: list[HotState] = field(default_factory=list)

    def new(self, suffix: str = "") -> HotState:
        """Another instance on the same store, as a second process would have."""
        prefix = self.prefix + suffix
        hs: HotState
        if self.kind == "memory":
            hs = MemoryHotState(prefix, store=self.store)
        else:
            hs = RedisHotState(REDIS_URL, prefix)
        self.made.append(hs)
        return hs

    async def keys(self, pattern: str) -> list[str]:
        if self.raw is None:
            return [k for k in self.store.live_keys() if fnmatch.fnmatchcase(k, pattern)]
        return [k.decode() async for k in self.raw.scan_iter(match=pattern, count=1000)]

    async def subscribers(self, full_channel: str) -> int:
        if self.raw is None:
            return len(self.store.subscribers.get(full_channel, ()))
        [(_, count)] = await self.raw.pubsub_numsub(full_channel)
        return int(count)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    b = Backend(kind=request.param, prefix=f"igris-test-{uuid.uuid4().hex[:12]}:")
    if b.kind == "redis":
        b.raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=False)
    try:
        yield b
    finally:
        for hs in b.made:
            await hs.close()
        if b.raw is not None:
            stale = [k async for k in b.raw.scan_iter(match=f"{b.prefix}*", count=1000)]
            if stale:
                await b.raw.delete(*stale)
            await b.raw.aclose()


@pytest.fixture
def hs(backend: Backend) -> HotState:
    return backend.new()


async def next_of(sub: Any) -> Any:
    return await asyncio.wait_for(anext(sub), WAIT_S)


# --- rate limiting (GCRA) ---


async def test_gcra_allows_exactly_the_limit_in_a_burst(hs: HotState) -> None:
    results = [await hs.rate_limit("key:1", limit=5, period_s=60) for _ in range(5)]

    assert [r.allowed for r in results] == [True] * 5
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0]
    assert all(r.retry_after_s == 0 for r in results)


async def test_gcra_denies_the_call_after_the_limit(hs: HotState) -> None:
    for _ in range(5):
        await hs.rate_limit("key:1", limit=5, period_s=60)

    denied = await hs.rate_limit("key:1", limit=5, period_s=60)

    assert not denied.allowed
    assert denied.remaining == 0
    # One unit comes back every period/limit = 12 s.
    assert 0 < denied.retry_after_s <= 12.0
    assert 0 < denied.reset_after_s <= 60.0


async def test_gcra_allows_again_after_the_retry_after(hs: HotState) -> None:
    for _ in range(2):
        assert (await hs.rate_limit("key:1", limit=2, period_s=0.2)).allowed
    denied = await hs.rate_limit("key:1", limit=2, period_s=0.2)
    assert not denied.allowed

    await asyncio.sleep(denied.retry_after_s + 0.02)

    assert (await hs.rate_limit("key:1", limit=2, period_s=0.2)).allowed


async def test_gcra_is_full_again_after_the_reset_time(hs: HotState) -> None:
    for _ in range(3):
        last = await hs.rate_limit("key:1", limit=3, period_s=0.3)

    await asyncio.sleep(last.reset_after_s + 0.02)

    assert (await hs.rate_limit("key:1", limit=3, period_s=0.3)).remaining == 2


async def test_gcra_honours_a_burst_larger_than_the_rate(hs: HotState) -> None:
    results = [await hs.rate_limit("k", limit=1, period_s=60, burst=3) for _ in range(4)]

    assert [r.allowed for r in results] == [True, True, True, False]
    assert 0 < results[-1].retry_after_s <= 60.0


async def test_gcra_cost_consumes_several_units(hs: HotState) -> None:
    first = await hs.rate_limit("k", limit=5, period_s=60, cost=3)
    too_much = await hs.rate_limit("k", limit=5, period_s=60, cost=3)
    exact = await hs.rate_limit("k", limit=5, period_s=60, cost=2)

    assert (first.allowed, first.remaining) == (True, 2)
    assert (too_much.allowed, too_much.remaining) == (False, 2)
    assert 0 < too_much.retry_after_s <= 12.0
    assert (exact.allowed, exact.remaining) == (True, 0)


async def test_gcra_with_cost_zero_reads_without_consuming(hs: HotState) -> None:
    await hs.rate_limit("k", limit=4, period_s=60)

    peek = await hs.rate_limit("k", limit=4, period_s=60, cost=0)
    again = await hs.rate_limit("k", limit=4, period_s=60, cost=0)

    assert (peek.allowed, peek.remaining) == (True, 3)
    assert again.remaining == 3


@pytest.mark.parametrize(
    "check",
    [
        RateCheck("k", limit=0, period_s=1),
        RateCheck("k", limit=1, period_s=0),
        RateCheck("k", limit=2, period_s=1, cost=3),
        RateCheck("k", limit=2, period_s=1, cost=-1),
        RateCheck("k", limit=2, period_s=1, burst=0),
    ],
)
async def test_gcra_refuses_impossible_or_invalid_limits(hs: HotState, check: RateCheck) -> None:
    with pytest.raises(ValueError):
        await hs.rate_limit_many([check])


async def test_rate_limit_many_consumes_from_every_limit_when_all_allow(hs: HotState) -> None:
    checks = [
        RateCheck("key:1", limit=10, period_s=60),
        RateCheck("rule:7", limit=5, period_s=60),
        RateCheck("quota:acme", limit=1000, period_s=3600),
    ]

    results = await hs.rate_limit_many(checks)

    assert [r.allowed for r in results] == [True, True, True]
    assert [r.remaining for r in results] == [9, 4, 999]


async def test_rate_limit_many_consumes_nothing_when_one_limit_denies(hs: HotState) -> None:
    await hs.rate_limit("rule:7", limit=1, period_s=60)
    checks = [RateCheck("key:1", limit=10, period_s=60), RateCheck("rule:7", limit=1, period_s=60)]

    results = await hs.rate_limit_many(checks)

    assert [r.allowed for r in results] == [True, False]
    assert results[0].remaining == 10  # the state after the call: untouched
    assert results[1].retry_after_s > 0
    assert (await hs.rate_limit("key:1", limit=10, period_s=60)).remaining == 9


async def test_rate_limit_many_is_all_or_nothing_under_concurrency(hs: HotState) -> None:
    checks = [RateCheck("tight", limit=5, period_s=60), RateCheck("loose", limit=50, period_s=60)]

    results = await asyncio.gather(*(hs.rate_limit_many(checks) for _ in range(20)))

    assert sum(all(r.allowed for r in rs) for rs in results) == 5
    assert (await hs.rate_limit("loose", limit=50, period_s=60, cost=0)).remaining == 45


async def test_rate_limit_many_counts_a_key_named_twice_twice(hs: HotState) -> None:
    checks = [RateCheck("k", limit=3, period_s=60), RateCheck("k", limit=3, period_s=60)]

    first = await hs.rate_limit_many(checks)
    second = await hs.rate_limit_many(checks)

    assert [r.allowed for r in first] == [True, True]
    assert first[-1].remaining == 1
    assert [r.allowed for r in second] == [True, False]
    assert (await hs.rate_limit("k", limit=3, period_s=60, cost=0)).remaining == 1


async def test_a_second_instance_shares_the_rate_limit(backend: Backend) -> None:
    one, two = backend.new(), backend.new()

    await one.rate_limit("k", limit=2, period_s=60)
    await two.rate_limit("k", limit=2, period_s=60)

    assert not (await one.rate_limit("k", limit=2, period_s=60)).allowed


# --- counters and windows ---


async def test_incr_adds_and_get_counter_reads_back(hs: HotState) -> None:
    assert await hs.get_counter("calls") == 0
    assert await hs.incr("calls") == 1
    assert await hs.incr("calls", 5) == 6
    assert await hs.incr("calls", -2) == 4
    assert await hs.get_counter("calls") == 4


async def test_a_counter_expires_after_its_ttl(hs: HotState) -> None:
    await hs.incr("calls", ttl_s=0.1)

    await asyncio.sleep(0.2)

    assert await hs.get_counter("calls") == 0


async def test_a_counter_ttl_is_set_once_and_not_pushed_back(hs: HotState) -> None:
    await hs.incr("calls", ttl_s=0.5)
    await asyncio.sleep(0.3)
    assert await hs.incr("calls", ttl_s=0.5) == 2

    await asyncio.sleep(0.3)

    assert await hs.get_counter("calls") == 0


async def test_window_add_counts_into_the_current_bucket(hs: HotState) -> None:
    await hs.window_add("calls", bucket_s=3600, buckets=5, amount=2)
    stats = await hs.window_add("calls", bucket_s=3600, buckets=5, amount=3)

    assert (stats.current, stats.total) == (5, 5)
    assert stats.buckets == [0, 0, 0, 0, 5]


async def test_window_add_with_amount_zero_only_reads(hs: HotState) -> None:
    empty = await hs.window_add("calls", bucket_s=3600, buckets=3, amount=0)
    await hs.window_add("calls", bucket_s=3600, buckets=3, amount=4)
    read = await hs.window_add("calls", bucket_s=3600, buckets=3, amount=0)

    assert empty.buckets == [0, 0, 0]
    assert (read.current, read.total) == (4, 4)


async def test_window_moves_on_and_forgets_old_buckets(hs: HotState) -> None:
    await hs.window_add("calls", bucket_s=1, buckets=3, amount=5)
    await asyncio.sleep(1.05)

    later = await hs.window_add("calls", bucket_s=1, buckets=3, amount=1)
    assert (later.current, later.total) == (1, 6)
    assert later.buckets[-1] == 1

    await asyncio.sleep(2.1)
    # At least three buckets after the first add: the 5 has fallen out of the window.
    assert (await hs.window_add("calls", bucket_s=1, buckets=3, amount=0)).total <= 1


# --- flags ---


async def test_flags_can_be_set_read_and_deleted(hs: HotState) -> None:
    assert await hs.get_flag("kill:s1") is None

    await hs.set_flag("kill:s1", "killed")
    await hs.set_flag("kill:s2", "suspended")

    assert await hs.get_flag("kill:s1") == "killed"
    assert await hs.get_flags(["kill:s1", "missing", "kill:s2"]) == ["killed", None, "suspended"]
    await hs.delete_flag("kill:s1")
    await hs.delete_flag("never-set")
    assert await hs.get_flags(["kill:s1", "kill:s2"]) == [None, "suspended"]
    assert await hs.get_flags([]) == []


async def test_a_flag_with_a_ttl_expires(hs: HotState) -> None:
    await hs.set_flag("cooldown", "1", ttl_s=0.1)
    await asyncio.sleep(0.2)

    assert await hs.get_flag("cooldown") is None


async def test_setting_a_flag_again_without_ttl_makes_it_permanent(hs: HotState) -> None:
    await hs.set_flag("f", "1", ttl_s=0.1)
    await hs.set_flag("f", "2")
    await asyncio.sleep(0.2)

    assert await hs.get_flag("f") == "2"


async def test_a_second_instance_hears_flag_changes(backend: Backend) -> None:
    writer, listener = backend.new(), backend.new()

    async with listener.subscribe_flags() as changes:
        await writer.set_flag("kill:s1", "killed")
        assert await next_of(changes) == ("kill:s1", "killed")
        assert await listener.get_flag("kill:s1") == "killed"

        await writer.delete_flag("kill:s1")
        assert await next_of(changes) == ("kill:s1", None)


async def test_flag_changes_under_another_prefix_are_not_heard(backend: Backend) -> None:
    ours, theirs = backend.new(), backend.new(suffix="other:")

    async with ours.subscribe_flags() as changes:
        await theirs.set_flag("kill:s1", "killed")
        await ours.set_flag("kill:s2", "killed")

        assert await next_of(changes) == ("kill:s2", "killed")
    assert await ours.get_flag("kill:s1") is None


async def test_set_if_absent_sets_once_and_announces_only_that(hs: HotState) -> None:
    async with hs.subscribe_flags() as changes:
        assert await hs.set_if_absent("cooldown:acme", "1", 60)
        assert not await hs.set_if_absent("cooldown:acme", "2", 60)
        await hs.set_flag("marker", "x")

        assert await next_of(changes) == ("cooldown:acme", "1")
        assert await next_of(changes) == ("marker", "x")  # the refused call stayed silent
    assert await hs.get_flag("cooldown:acme") == "1"


async def test_set_if_absent_succeeds_again_after_the_cooldown(hs: HotState) -> None:
    assert await hs.set_if_absent("cooldown:acme", "1", 0.1)
    await asyncio.sleep(0.2)

    assert await hs.set_if_absent("cooldown:acme", "1", 0.1)


# --- streams ---


async def test_stream_append_and_range_read_entries_back_in_order(hs: HotState) -> None:
    ids = [await hs.stream_append("audit", {"n": str(i), "raw": b"\x00\xff"}) for i in range(3)]

    everything = await hs.stream_range("audit")

    assert [entry_id for entry_id, _ in everything] == ids
    assert everything[0][1] == {"n": b"0", "raw": b"\x00\xff"}
    assert await hs.stream_len("audit") == 3
    assert [i for i, _ in await hs.stream_range("audit", count=2)] == ids[:2]
    assert [i for i, _ in await hs.stream_range("audit", ids[1], "+")] == ids[1:]
    assert [i for i, _ in await hs.stream_range("audit", "(" + ids[0])] == ids[1:]
    assert [i for i, _ in await hs.stream_range("audit", "-", ids[1])] == ids[:2]


async def test_stream_append_many_appends_a_batch_in_order(hs: HotState) -> None:
    ids = await hs.stream_append_many("audit", [{"n": "1"}, {"n": "2"}, {"n": "3"}])

    entries = await hs.stream_range("audit")

    assert [i for i, _ in entries] == ids
    assert [f["n"] for _, f in entries] == [b"1", b"2", b"3"]
    assert await hs.stream_append_many("audit", []) == []


async def test_stream_maxlen_keeps_exactly_the_newest_entries(hs: HotState) -> None:
    ids = [await hs.stream_append("feed", {"n": str(i)}, maxlen=3) for i in range(5)]

    assert await hs.stream_len("feed") == 3
    assert [i for i, _ in await hs.stream_range("feed")] == ids[2:]


async def test_a_missing_stream_is_empty(hs: HotState) -> None:
    assert await hs.stream_len("nothing") == 0
    assert await hs.stream_range("nothing") == []


async def test_read_group_delivers_each_entry_once_per_group(hs: HotState) -> None:
    await hs.stream_ensure_group("audit", "writer")
    await hs.stream_ensure_group("audit", "exporter")
    ids = await hs.stream_append_many("audit", [{"n": "1"}, {"n": "2"}, {"n": "3"}])

    first = await hs.stream_read_group("audit", "writer", "w1", count=2)
    second = await hs.stream_read_group("audit", "writer", "w2", count=10)
    nothing = await hs.stream_read_group("audit", "writer", "w1")
    other_group = await hs.stream_read_group("audit", "exporter", "e1")

    assert [i for i, _ in first] == ids[:2]
    assert [i for i, _ in second] == ids[2:]
    assert nothing == []
    assert [i for i, _ in other_group] == ids
    assert first[0][1] == {"n": b"1"}


async def test_ensure_group_is_idempotent_and_replays_earlier_entries(hs: HotState) -> None:
    entry_id = await hs.stream_append("audit", {"n": "1"})

    await hs.stream_ensure_group("audit", "writer")
    await hs.stream_ensure_group("audit", "writer")

    assert [i for i, _ in await hs.stream_read_group("audit", "writer", "w1")] == [entry_id]


async def test_a_group_starting_at_the_end_skips_earlier_entries(hs: HotState) -> None:
    await hs.stream_append("audit", {"n": "old"})
    await hs.stream_ensure_group("audit", "live", start_id="$")
    new_id = await hs.stream_append("audit", {"n": "new"})

    assert [i for i, _ in await hs.stream_read_group("audit", "live", "c")] == [new_id]


async def test_reading_a_missing_group_raises_a_clear_error(hs: HotState) -> None:
    await hs.stream_append("audit", {"n": "1"})

    with pytest.raises(NoSuchGroupError):
        await hs.stream_read_group("audit", "nobody", "c")
    with pytest.raises(NoSuchGroupError):
        await hs.stream_pending_claim("audit", "nobody", "c", min_idle_ms=0)


async def test_a_blocking_read_wakes_up_when_an_entry_arrives(backend: Backend) -> None:
    reader, writer = backend.new(), backend.new()
    await reader.stream_ensure_group("audit", "writer")
    waiting = asyncio.create_task(
        reader.stream_read_group("audit", "writer", "w1", block_ms=10_000)
    )
    await asyncio.sleep(0.05)  # let the read block first

    entry_id = await writer.stream_append("audit", {"n": "1"})

    assert [i for i, _ in await asyncio.wait_for(waiting, WAIT_S)] == [entry_id]


async def test_a_blocking_read_returns_nothing_after_its_timeout(hs: HotState) -> None:
    await hs.stream_ensure_group("audit", "writer")

    result = await asyncio.wait_for(
        hs.stream_read_group("audit", "writer", "w1", block_ms=100), WAIT_S
    )

    assert result == []


async def test_acknowledged_entries_are_never_claimed(hs: HotState) -> None:
    await hs.stream_ensure_group("audit", "writer")
    ids = await hs.stream_append_many("audit", [{"n": "1"}, {"n": "2"}])
    await hs.stream_read_group("audit", "writer", "w1")

    assert await hs.stream_ack("audit", "writer", [ids[0]]) == 1
    assert await hs.stream_ack("audit", "writer", [ids[0]]) == 0
    assert await hs.stream_ack("audit", "writer", []) == 0

    claimed = await hs.stream_pending_claim("audit", "writer", "w2", min_idle_ms=0)
    assert [i for i, _ in claimed] == [ids[1]]


async def test_a_new_consumer_takes_over_what_a_dead_one_left_unacked(backend: Backend) -> None:
    dead, successor = backend.new(), backend.new()
    await dead.stream_ensure_group("audit", "writer")
    ids = await dead.stream_append_many("audit", [{"n": "1"}, {"n": "2"}, {"n": "3"}])
    await dead.stream_read_group("audit", "writer", "w1")
    assert await successor.stream_read_group("audit", "writer", "w2") == []

    too_fresh = await successor.stream_pending_claim("audit", "writer", "w2", min_idle_ms=10_000)
    await asyncio.sleep(0.1)
    claimed = await successor.stream_pending_claim("audit", "writer", "w2", min_idle_ms=50)
    claimed_again = await successor.stream_pending_claim("audit", "writer", "w3", min_idle_ms=50)

    assert too_fresh == []
    assert [i for i, _ in claimed] == ids
    assert claimed[2][1] == {"n": b"3"}
    assert claimed_again == []  # claiming resets the idle time
    assert await successor.stream_ack("audit", "writer", ids) == 3
    assert await successor.stream_pending_claim("audit", "writer", "w3", min_idle_ms=0) == []


# --- pub/sub ---


async def test_publish_fans_out_to_every_subscriber(backend: Backend) -> None:
    one, two = backend.new(), backend.new()

    async with one.subscribe("feed:acme") as first, two.subscribe("feed:acme", "other") as second:
        await one.publish("feed:acme", "hello")
        await two.publish("other", b"\x01\x02")
        await one.publish("feed:acme", b"bye")

        assert await next_of(first) == ("feed:acme", b"hello")
        assert await next_of(first) == ("feed:acme", b"bye")  # "other" never reached it
        assert await next_of(second) == ("feed:acme", b"hello")
        assert await next_of(second) == ("other", b"\x01\x02")
        assert await next_of(second) == ("feed:acme", b"bye")


async def test_a_subscription_is_removed_when_left(backend: Backend, hs: HotState) -> None:
    channel = f"{backend.prefix}ch:feed"
    async with hs.subscribe("feed"):
        assert await backend.subscribers(channel) == 1

    async def gone() -> None:
        while await backend.subscribers(channel):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(gone(), WAIT_S)  # Redis notices the closed connection a moment later
    await hs.publish("feed", "nobody listens")


async def test_a_subscription_can_be_iterated_without_async_with(hs: HotState) -> None:
    changes = hs.subscribe_flags()
    first = asyncio.create_task(next_of(changes))

    async def until_heard() -> Any:
        while not first.done():
            await hs.set_flag("kill:s1", "killed")
            await asyncio.sleep(0.02)
        return first.result()

    try:
        assert await asyncio.wait_for(until_heard(), WAIT_S) == ("kill:s1", "killed")
    finally:
        await changes.aclose()


async def test_closing_a_subscription_ends_a_pending_iteration(hs: HotState) -> None:
    sub = hs.subscribe("feed")
    await sub.__aenter__()

    async def drain() -> list[Any]:
        return [item async for item in sub]

    reader = asyncio.create_task(drain())
    await asyncio.sleep(0.05)  # let the reader wait for a message
    await sub.aclose()

    assert await asyncio.wait_for(reader, WAIT_S) == []


async def test_a_closed_subscription_cannot_be_reused(hs: HotState) -> None:
    sub = hs.subscribe("feed")
    async with sub:
        pass

    with pytest.raises(HotStateError):
        await sub.__aenter__()


# --- health, naming, lifecycle ---


async def test_ping_answers_true(hs: HotState) -> None:
    assert await hs.ping() is True


async def test_every_key_written_carries_the_prefix(backend: Backend, hs: HotState) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    await hs.rate_limit(marker, limit=5, period_s=60)
    await hs.incr(marker, ttl_s=60)
    await hs.window_add(marker, bucket_s=60, buckets=2)
    await hs.set_flag(marker, "1")
    await hs.stream_append(marker, {"n": "1"})

    keys = await backend.keys(f"*{marker}*")

    assert len(keys) == 5
    assert all(k.startswith(backend.prefix) for k in keys)


async def test_redis_that_cannot_be_reached_is_reported_not_raised() -> None:
    hs = RedisHotState("redis://127.0.0.1:1/0")
    try:
        assert await hs.ping() is False
        with pytest.raises(HotStateUnavailable):
            await hs.rate_limit("k", limit=1, period_s=1)
        with pytest.raises(HotStateUnavailable):
            await hs.subscribe("feed").__aenter__()
    finally:
        await hs.close()


async def test_a_burst_larger_than_the_redis_pool_queues_instead_of_failing() -> None:
    prefix = f"igris-pool-{uuid.uuid4().hex[:8]}:"
    hs = RedisHotState(REDIS_URL, prefix, max_connections=3)
    pool = hs.redis.connection_pool
    most = 0

    async def one() -> int:
        nonlocal most
        value = await hs.incr("burst")
        most = max(most, len(pool._in_use_connections))  # type: ignore[attr-defined]
        return value

    try:
        values = await asyncio.gather(*(one() for _ in range(300)))
        assert sorted(values) == list(range(1, 301))  # every command ran, none was refused
        assert most <= 3
        assert await hs.get_counter("burst") == 300
    finally:
        await hs.redis.delete(f"{prefix}cnt:burst")
        await hs.close()


async def test_memory_purges_expired_keys_on_later_writes() -> None:
    hs = MemoryHotState()
    for i in range(100):
        await hs.incr(f"c{i}", ttl_s=0.05)
    for _ in range(2000):
        await hs.rate_limit("hot", limit=10_000, period_s=60)
    await asyncio.sleep(0.1)

    await hs.incr("survivor")

    assert set(hs.store.values) == {"igris:cnt:survivor", "igris:rl:hot"}
    assert len(hs.store._deadlines) < 500  # 2,000 re-set TTLs did not pile up


async def test_get_hotstate_uses_memory_without_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = SimpleNamespace(REDIS_URL="", IGRIS_HOTSTATE_PREFIX="igris-test:")
    monkeypatch.setattr("django.conf.settings", settings)
    await hotstate_module.close_hotstate()
    try:
        first = hotstate_module.get_hotstate()

        assert isinstance(first, MemoryHotState)
        assert first.prefix == "igris-test:"
        assert hotstate_module.get_hotstate() is first
    finally:
        await hotstate_module.close_hotstate()


async def test_get_hotstate_uses_redis_when_redis_url_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = SimpleNamespace(REDIS_URL=REDIS_URL, IGRIS_HOTSTATE_PREFIX="igris-test:")
    monkeypatch.setattr("django.conf.settings", settings)
    await hotstate_module.close_hotstate()
    try:
        instance = hotstate_module.get_hotstate()

        assert isinstance(instance, RedisHotState)
        assert await instance.ping()
    finally:
        await hotstate_module.close_hotstate()


async def test_deleted_stream_entries_are_gone_for_readers_and_length(hs):
    first = await hs.stream_append("s-del", {"n": "1"})
    second = await hs.stream_append("s-del", {"n": "2"})
    assert await hs.stream_delete("s-del", [first, "0-1"]) == 1
    assert await hs.stream_len("s-del") == 1
    assert [entry_id for entry_id, _ in await hs.stream_range("s-del")] == [second]
    assert await hs.stream_delete("s-del", []) == 0


async def test_publish_many_delivers_every_message_in_order(hs):
    async with hs.subscribe("pm-a", "pm-b") as sub:
        await hs.publish_many([("pm-a", "1"), ("pm-b", b"2"), ("pm-a", "3")])
        received = [await asyncio.wait_for(anext(sub), 5) for _ in range(3)]
    assert [(channel, message) for channel, message in received] == [
        ("pm-a", b"1"),
        ("pm-b", b"2"),
        ("pm-a", b"3"),
    ]
    await hs.publish_many([])


async def test_admit_reads_flags_and_limits_in_one_step(hs):
    checks = [RateCheck(key="adm", limit=2, period_s=60)]
    await hs.set_flag("sess:x", "bound")
    values, results = await hs.admit(["kill:a", "sess:x", "kill:b"], checks)
    assert values == [None, "bound", None]
    assert [r.allowed for r in results] == [True]
    values, results = await hs.admit([], checks)
    assert values == [] and [r.allowed for r in results] == [True]
    values, results = await hs.admit(["kill:a"], checks)
    assert [r.allowed for r in results] == [False]


async def test_admit_consumes_nothing_when_a_stop_flag_is_set(hs):
    checks = [RateCheck(key="adm-stop", limit=1, period_s=60)]
    await hs.set_flag("kill:k", "killed:test")
    values, results = await hs.admit(["sess:none", "kill:k"], checks)
    assert values == [None, "killed:test"] and results is None
    await hs.delete_flag("kill:k")
    _, results = await hs.admit(["kill:k"], checks)
    assert [r.allowed for r in results] == [True]
