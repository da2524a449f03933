"""Latency of the proxy's step 4 (quota + rate) on both hot-state backends (DESIGN.md section 3).

One `rate_limit_many` with three checks (per-key limit, per-rule limit, monthly quota) is what
every `tools/call` pays. Measured sequentially (p50/p99 latency) and with 16 concurrent callers
(throughput), against a direct baseline in the same run: a bare Redis PING on the same client,
the floor any Redis round trip pays (reference/performance.md section 4).

    .venv/bin/python bench/bench_hotstate.py [--redis-url redis://127.0.0.1:6379/15] [-n 5000]

Writes bench/results/hotstate.json. Keys use a random prefix and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governance.runtime.hotstate import HotState, MemoryHotState, RateCheck, RedisHotState  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "hotstate.json"
CONCURRENCY = 16


def checks_for(i: int) -> list[RateCheck]:
    # Limits high enough that every call is allowed and writes, the common (and dearer) case;
    # 100 keys so the working set is more than one hot key.
    key = i % 100
    return [
        RateCheck(f"key:{key}", limit=1_000_000, period_s=60),
        RateCheck(f"rule:{key % 10}", limit=1_000_000, period_s=60),
        RateCheck("quota:acme", limit=100_000_000, period_s=30 * 86400),
    ]


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1000

    return {
        "n": len(ordered),
        "p50_us": round(pct(0.50), 1),
        "p99_us": round(pct(0.99), 1),
        "mean_us": round(statistics.fmean(ordered) / 1000, 1),
        "max_us": round(ordered[-1] / 1000, 1),
    }


async def sequential(op: Callable[[int], Awaitable[Any]], n: int) -> dict[str, float]:
    for i in range(min(500, n)):  # warm-up: connections, script cache, allocator
        await op(i)
    samples: list[int] = []
    for i in range(n):
        start = time.perf_counter_ns()
        await op(i)
        samples.append(time.perf_counter_ns() - start)
    return summary(samples)


async def concurrent(op: Callable[[int], Awaitable[Any]], n: int) -> dict[str, float]:
    per_worker = max(1, n // CONCURRENCY)

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await op(w * per_worker + i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    return {"concurrency": CONCURRENCY, "ops_per_s": round(per_worker * CONCURRENCY / elapsed)}


async def bench_backend(hs: HotState, n: int) -> dict[str, Any]:
    async def many(i: int) -> None:
        results = await hs.rate_limit_many(checks_for(i))
        assert all(r.allowed for r in results), "bench limits must not deny"

    async def single(i: int) -> None:
        await hs.rate_limit(f"key:{i % 100}", limit=1_000_000, period_s=60)

    return {
        "rate_limit_many_3": await sequential(many, n),
        "rate_limit_1": await sequential(single, n),
        "rate_limit_many_3_concurrent": await concurrent(many, n),
    }


async def main(redis_url: str, n: int) -> dict[str, Any]:
    prefix = f"igris-bench-{uuid.uuid4().hex[:8]}:"
    report: dict[str, Any] = {
        "what": "hot state rate_limit_many (per-key + per-rule + quota) latency",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "redis_url": redis_url,
    }
    memory = MemoryHotState(prefix)
    report["memory"] = await bench_backend(memory, n)

    redis_hs = RedisHotState(redis_url, prefix)
    try:

        async def ping(_i: int) -> None:
            await redis_hs.redis.ping()

        report["redis_ping_baseline"] = await sequential(ping, n)
        report["redis"] = await bench_backend(redis_hs, n)
        report["redis"]["added_p50_us_vs_ping"] = round(
            report["redis"]["rate_limit_many_3"]["p50_us"]
            - report["redis_ping_baseline"]["p50_us"],
            1,
        )
    finally:
        stale = [k async for k in redis_hs.redis.scan_iter(match=f"{prefix}*", count=1000)]
        if stale:
            await redis_hs.redis.delete(*stale)
        await redis_hs.close()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("-n", type=int, default=5000, help="calls per measurement")
    args = parser.parse_args()
    result = asyncio.run(main(args.redis_url, args.n))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
