"""Throughput of the audit writer (DESIGN.md section 1, auditwriter) on PostgreSQL and Redis.

N synthetic proxy `tool_call` envelopes over 10 organisations are stored with the hash chain:

- direct_copy / direct_bulk_create: `append_events` in batches of 500 (one transaction each),
  inserting with COPY or with INSERT (`bulk_create`);
- stream: the proxy's path. Entries are appended to the Redis audit stream first (not timed: the
  proxy pays that), then the writer reads them with the consumer group, stores, acknowledges
  and publishes each event to the live feed: with the publish turned into a no-op, with
  run_forever's publisher task (stored = durable; all_published_after_s = feed caught up), and
  with drain_stream's inline publish (one PUBLISH round trip per event, awaited);

against direct baselines in the same run: COPY of the same rows with no chain work (hashes
precomputed: the database's share), and the chain alone in Python with no database (validation,
canonical encoding, SHA-256). verify_chain's rate is measured on the result.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/igris_audit \\
    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python bench/bench_audit_writer.py \\
        [-n 50000] [--cases stream_live_publish_task,chain_only_python] [--repeat 5] [--batch 500]

`--cases` runs only the named cases (verify_chain needs a case that stored events before it);
`--batch` sets the events per transaction (and per XREADGROUP);
`--repeat` runs each case that many times and reports the median run (by events/s), with every
run's rate and the load average around it kept in the JSON: the machine is shared, and one run
can land on a busy moment.

Runs in a scratch database (<db>_bench, created and dropped: audit rows cannot be deleted) and a
random Redis key prefix. Writes bench/results/audit_writer.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "igris_project.settings")

import django  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

from compliance.audit import writer  # noqa: E402
from compliance.audit.chain import GENESIS  # noqa: E402
from compliance.audit.rows import Incoming, envelope_row  # noqa: E402
from compliance.audit.store import _insert_copy, chain_entries  # noqa: E402
from compliance.audit.verify import verify_chain  # noqa: E402
from compliance.audit.writer import (  # noqa: E402
    LivePublisher,
    StreamDrainer,
    append_events,
    drain_stream,
)
from governance.events import AUDIT_STREAM, Actor, Envelope  # noqa: E402
from governance.gctune import tune_gc  # noqa: E402
from governance.runtime.hotstate import RedisHotState  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "audit_writer.json"
BATCH = 500
ORGS = 10
TARGET = 20_000


def envelopes(n: int, orgs: list[uuid.UUID]) -> list[dict[str, Any]]:
    actor = Actor(kind="api_key", id=str(uuid.uuid4()), label="agents")
    server = str(uuid.uuid4())
    return [
        Envelope(
            org_id=str(orgs[i % len(orgs)]),
            type="tool_call",
            source="proxy",
            actor=actor,
            data={
                "server_id": server,
                "server_slug": "github",
                "session_id": f"sess-{i % 50}",
                "key_id": actor.id,
                "method": "tools/call",
                "tool": "create_issue",
                "decision": "allow",
                "rule_id": "allow-issues",
                "policy_version": 3,
                "latency_ms": 12.5,
                "upstream_ms": 10.25,
                "upstream_status": 200,
                "result": "ok",
                "request_bytes": 412,
                "response_bytes": 1530,
                "args_digest": "sha256:" + "ab" * 32,
                "arguments": {"repo": "acme/web", "title": f"issue {i}", "labels": ["bug"]},
                "client_info": {"name": "claude-code", "version": "2.1.0"},
                "protocol_version": "2025-06-18",
            },
        ).as_dict()
        for i in range(n)
    ]


def json_round_trip(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(e)) for e in batch]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


_cpu_mark = [0.0]


def cpu_mark() -> None:
    _cpu_mark[0] = time.process_time()


def rate(n: int, seconds: float, **extra: Any) -> dict[str, Any]:
    # CPU seconds of this process (all threads) since cpu_mark(): unlike wall time, not inflated
    # by other work on a shared machine. PostgreSQL's and Redis's own CPU is not in it.
    cpu = time.process_time() - _cpu_mark[0]
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds),
        "writer_cpu_s": round(cpu, 3),
        "events_per_writer_cpu_s": round(n / cpu) if cpu else None,
        **extra,
    }


def direct(n: int, insert: str, batch_size: int) -> dict[str, Any]:
    batch = json_round_trip(envelopes(n, [uuid.uuid4() for _ in range(ORGS)]))

    def run() -> int:
        return sum(
            append_events(
                batch[i : i + batch_size],
                insert=insert,  # type: ignore[arg-type]
                from_json=True,
            )
            for i in range(0, n, batch_size)
        )

    cpu_mark()
    seconds, stored = timed(run)
    assert stored == n, stored
    return rate(n, seconds)


def chain_rows(batch: list[dict[str, Any]]) -> list[Any]:
    """What store_batch does in Python, without the database: validate, encode, hash."""
    now = datetime.now(UTC)
    # As the writer gets them: parsed from the stream's JSON text.
    # `batch` as the writer gets it: parsed from the stream's JSON text.
    entries = [envelope_row(Incoming(e, f"bench:{i}"), now) for i, e in enumerate(batch)]
    chain_entries(entries, defaultdict(lambda: (0, GENESIS)))
    return entries


def chain_only(n: int) -> dict[str, Any]:
    batch = json_round_trip(envelopes(n, [uuid.uuid4() for _ in range(ORGS)]))
    cpu_mark()
    seconds, rows = timed(lambda: chain_rows(batch))
    assert len(rows) == n
    return rate(n, seconds)


def baseline_copy(n: int, batch_size: int) -> dict[str, Any]:
    rows = chain_rows(json_round_trip(envelopes(n, [uuid.uuid4() for _ in range(ORGS)])))

    def run() -> None:
        for i in range(0, n, batch_size):
            with transaction.atomic():
                _insert_copy(rows[i : i + batch_size])

    cpu_mark()
    seconds, _ = timed(run)
    return rate(n, seconds)


class _NoPublish:
    """The hot state with the live-feed publish turned into a no-op."""

    def __init__(self, inner: RedisHotState) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def publish(self, channel: str, message: bytes | str) -> None:
        return None

    async def publish_many(self, messages: Any) -> None:
        return None


async def stream(n: int, *, publish: str, batch_size: int) -> dict[str, Any]:
    """publish: "none" (no-op), "inline" (drain_stream as is) or "task" (run_forever's way)."""
    hotstate = RedisHotState(settings.REDIS_URL, prefix=f"igris-bench-{uuid.uuid4().hex[:8]}:")
    try:
        batch = envelopes(n, [uuid.uuid4() for _ in range(ORGS)])
        entries = [{"event": json.dumps(e)} for e in batch]
        for i in range(0, n, 1000):
            await hotstate.stream_append_many(AUDIT_STREAM, entries[i : i + 1000])
        extra: dict[str, Any] = {"live_publish": publish}
        cpu_mark()
        start = time.perf_counter()
        if publish == "task":
            stop = asyncio.Event()
            publisher = LivePublisher(hotstate, limit=n)
            task = asyncio.create_task(publisher.run(stop))
            drainer = StreamDrainer(
                hotstate, batch=batch_size, consumer="bench", publish=publisher.offer
            )
            while await drainer.pump():
                pass
            stored, seconds = drainer.stored, time.perf_counter() - start
            stop.set()
            await task
            extra["all_published_after_s"] = round(time.perf_counter() - start, 3)
            assert publisher.published == n, publisher.published
        else:
            target: Any = hotstate if publish == "inline" else _NoPublish(hotstate)
            stored = await drain_stream(target, batch_size, consumer="bench")
            seconds = time.perf_counter() - start
        assert stored == n, stored
        pending = await hotstate.stream_pending_claim(
            AUDIT_STREAM, writer.GROUP, "inspector", min_idle_ms=0, count=10
        )
        assert pending == [], pending
        return rate(n, seconds, **extra)
    finally:
        await hotstate.redis.delete(hotstate._key("stream", AUDIT_STREAM))
        await hotstate.close()
        # The writer worked in asgiref's thread; its connection would keep the scratch DB busy.
        await sync_to_async(connections.close_all)()


def verify_rate() -> dict[str, Any]:
    from compliance.models import ChainHead

    head = ChainHead.objects.order_by("-seq").first()
    assert head is not None
    cpu_mark()
    seconds, result = timed(lambda: verify_chain(head.org_id))
    assert result.ok, result
    return rate(result.checked, seconds)


CASES: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "baseline_copy_no_chain": baseline_copy,
    "chain_only_python": lambda n, b: chain_only(n),
    "direct_copy": lambda n, b: direct(n, "copy", b),
    "direct_bulk_create": lambda n, b: direct(n, "bulk", b),
    "stream_without_live_publish": lambda n, b: asyncio.run(
        stream(n, publish="none", batch_size=b)
    ),
    "stream_live_publish_task": lambda n, b: asyncio.run(stream(n, publish="task", batch_size=b)),
    "stream_live_publish_inline": lambda n, b: asyncio.run(
        stream(n, publish="inline", batch_size=b)
    ),
    "verify_chain": lambda n, b: verify_rate(),
}


def repeated(case: str, n: int, batch_size: int, repeat: int) -> dict[str, Any]:
    """The median of `repeat` runs of one case, with every run's rate and the load around it."""
    runs = []
    for _ in range(repeat):
        figures = CASES[case](n, batch_size)
        figures["load_average_after"] = round(os.getloadavg()[0], 2)
        runs.append(figures)
    median = sorted(runs, key=lambda f: f["events_per_s"])[len(runs) // 2]
    if repeat > 1:
        median = {
            **median,
            "runs_events_per_s": [f["events_per_s"] for f in runs],
            "runs_load_average_after": [f["load_average_after"] for f in runs],
        }
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument(
        "--cases", default="", help=f"Comma-separated, from: {', '.join(CASES)} (default: all)."
    )
    parser.add_argument("--repeat", type=int, default=1, help="Runs per case; the median counts.")
    parser.add_argument("--batch", type=int, default=BATCH, help="Events per transaction.")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c] or list(CASES)
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        sys.exit(f"unknown cases: {', '.join(unknown)}")
    if args.repeat < 1 or args.batch < 1:
        sys.exit("--repeat and --batch must be at least 1")
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        sys.exit("set DATABASE_URL (PostgreSQL) and REDIS_URL")
    n = args.n
    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"{db['NAME']}_bench"
    tune_gc()  # as run_audit_writer does
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    original = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        results = {case: repeated(case, n, args.batch, args.repeat) for case in cases}
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(original, verbosity=0)
    report = {
        "what": "audit writer throughput: validate, chain (SHA-256), insert, ack, publish",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        # Shared 2-core machine: other work running at the same time skews every figure alike.
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "n": n,
        "batch": args.batch,
        "organisations": ORGS,
        "repeat": args.repeat,
        "target_events_per_s": TARGET,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name, figures in results.items():
        runs = figures.get("runs_events_per_s")
        print(
            f"{name:30} {figures['events_per_s']:>8} events/s ({figures['seconds']} s wall)"
            f"  {figures['events_per_writer_cpu_s']:>8} events per writer CPU-second"
            + (f"  runs {runs}" if runs else "")
        )
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
