"""Latency histograms with fixed, log-spaced buckets: what the rollups store and how p50, p95 and
p99 are estimated from them. Pure: no database.

Four buckets per decade from 0.1 ms to 100 s (upper bounds 10^(k/4) ms), plus one for slower
calls. Fixed bounds let two histograms be added column by column in SQL (`a.b7 + excluded.b7`),
which is what makes an upsert of the per-minute rollup one statement; sketches such as t-digest
or DDSketch merge better but cannot be added inside an `ON CONFLICT DO UPDATE` on both
PostgreSQL and SQLite. With a ratio of 1.78 between bounds and geometric interpolation inside
the bucket, an estimate is within the bucket that holds the true value: good enough to see a p99
move from 40 ms to 400 ms, which is what the dashboard is for.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

PER_DECADE = 4
LOWEST_EXPONENT = -4  # 10^(-4/4) = 0.1 ms
HIGHEST_EXPONENT = 20  # 10^(20/4) = 100 s
BOUNDS_MS: tuple[float, ...] = tuple(
    10 ** (k / PER_DECADE) for k in range(LOWEST_EXPONENT, HIGHEST_EXPONENT + 1)
)
# Bucket i holds values <= BOUNDS_MS[i] (and > BOUNDS_MS[i - 1]); the last bucket the rest.
BUCKETS = len(BOUNDS_MS) + 1


def bucket_of(value_ms: float) -> int:
    """The bucket of one latency; negative or NaN values (clock steps) count as the fastest."""
    if not value_ms > 0:
        return 0
    return bisect.bisect_left(BOUNDS_MS, value_ms)


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of the histogram `counts`, in ms; None when it is empty.

    Rank r = ceil(q * n) falls in some bucket; inside it the value is interpolated geometrically
    between the bucket's bounds, each value standing at the middle of its share of the bucket
    (latencies spread evenly on a log scale within one bucket is the assumption). The overflow
    bucket answers its lower bound: "more than 100 s".
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            if index >= len(BOUNDS_MS):
                return BOUNDS_MS[-1]
            upper = BOUNDS_MS[index]
            lower = BOUNDS_MS[index - 1] if index > 0 else upper / (10 ** (1 / PER_DECADE))
            # The rank's place among the bucket's values, each counted at its middle: one value
            # in a bucket reads as the bucket's geometric middle, not its upper bound.
            fraction = (rank - seen - 0.5) / count
            return lower * (upper / lower) ** fraction
        seen += count
    return BOUNDS_MS[-1]
