"""Live feed delivery: 200 SSE subscribers of one organisation on /api/v1/events.

Stack: igris (uvicorn, 1 worker, uvloop, httptools) with PostgreSQL and Redis; the audit writer
runs in this process (`StreamDrainer`, the code `run_audit_writer` runs) so the moment it
publishes each stored event is known. Subscribers run in their own processes (aiohttp on uvloop,
`--procs` of them sharing `--subscribers` connections), each with one direct Redis subscriber to
`live:<org>` as the baseline: what plain pub/sub costs on this machine, without igris.

This process appends `-n` tool_call envelopes to the audit stream at `--rate` per second (as the
proxy does); the writer stores them (one transaction per batch: seq, hash chain, commit) and
publishes each to `live:<org>`; igris fans each out to every SSE connection. Latencies, per
(subscriber, event), from wall clocks of the same machine (time.time_ns):

- publish_to_receipt: the writer's PUBLISH of the event -> the `id:` line read by the subscriber
  (igris' share: Redis -> hub -> consumers -> 200 connections; the target is p99 <= 50 ms);
- commit_to_receipt: the writer's commit of the event's batch -> receipt;
- append_to_receipt: the proxy-side stream append -> receipt (the whole path, writer included);
- baseline_publish_to_receipt: PUBLISH -> a direct redis.asyncio subscriber;
- first_receipt_per_event / last_receipt_per_event: per event, its first and last connection's
  publish_to_receipt. A high first receipt is a stall of the whole process before the fan-out
  began (it was full garbage collections, 100+ ms here); the last is the fan-out's own length.

    .venv/bin/python bench/live_feed.py [-n 200] [--subscribers 200] [--rate 20] [--skip-migrate]
        [--profile PATH]

`--profile PATH` serves igris under cProfile (CPU time of its event-loop thread) while the events
are published and writes the stats to PATH: `python -m pstats PATH`. The database and Redis are
bench/common.py's: IGRIS_BENCH_DATABASE_URL and IGRIS_BENCH_REDIS_URL.

Writes bench/results/live_feed.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

FEED_PATH = "/api/v1/events"
TARGET_P99_MS = 50.0


# --- subscriber process ---------------------------------------------------------------------------


async def _subscribe(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec["connections"]` SSE connections plus one direct Redis subscriber; receipt times."""
    import aiohttp
    import redis.asyncio as aioredis

    events, deadline = spec["events"], time.monotonic() + spec["timeout_s"]
    receipts: list[list[int]] = []  # per connection: [seq, t_ns, seq, t_ns, ...]
    baseline: list[int] = []
    ready = asyncio.Event()
    started = {"n": 0}
    failures: list[str] = []

    async def one(http: aiohttp.ClientSession) -> None:
        got: list[int] = []
        receipts.append(got)
        headers = {"Authorization": f"Bearer {spec['key']}", "Accept": "text/event-stream"}
        try:
            async with http.get(spec["url"], headers=headers) as response:
                if response.status != 200:
                    failures.append(f"{response.status} {(await response.read())[:200]!r}")
                    return
                async for line in response.content:
                    if line.startswith(b"id: "):
                        got += (int(line[4:]), time.time_ns())
                        if len(got) >= 2 * events:
                            return
                    elif line.startswith(b"retry:"):
                        started["n"] += 1
                        if started["n"] == spec["connections"]:
                            ready.set()
        except Exception as exc:
            failures.append(repr(exc))

    async def direct() -> None:
        client = aioredis.Redis.from_url(spec["redis_url"])
        pubsub = client.pubsub()
        await pubsub.subscribe(spec["channel"])
        try:
            while len(baseline) < 2 * events:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    now = time.time_ns()
                    baseline.extend((json.loads(message["data"])["seq"], now))
        finally:
            await pubsub.aclose()
            await client.aclose()

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [asyncio.create_task(one(http)) for _ in range(spec["connections"])]
        tasks.append(asyncio.create_task(direct()))
        try:
            try:
                async with asyncio.timeout(60):
                    await ready.wait()
            except TimeoutError:
                failures.append(f"{started['n']} of {spec['connections']} connected in 60 s")
            print("@ready", flush=True)
            remaining = max(1.0, deadline - time.monotonic())
            await asyncio.wait(tasks, timeout=remaining)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {"receipts": receipts, "baseline": baseline, "failures": failures[:20]}


def subscriber_main(spec_json: str) -> int:
    import uvloop

    spec = json.loads(spec_json)
    result = uvloop.run(_subscribe(spec))
    # Through a file: as a ~300 KB stdout line it came out cut short in some runs (the reader,
    # on uvloop, lost what was still buffered when the process exited).
    Path(spec["result_path"]).write_text(json.dumps(result))
    print("@result", flush=True)
    return 0


# --- the measurement ----------------------------------------------------------------------------


async def _start_subscribers(specs: list[dict[str, Any]]) -> list[asyncio.subprocess.Process]:
    procs = []
    for spec in specs:
        procs.append(
            await asyncio.create_subprocess_exec(
                common.PY,
                __file__,
                "subscribe",
                json.dumps(spec),
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 20,
                cwd=common.ROOT,
                start_new_session=True,
            )
        )
    return procs


async def _line(proc: asyncio.subprocess.Process, prefix: str, timeout_s: float) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                raise RuntimeError(f"subscriber exited before {prefix}")
            line = raw.decode().strip()
            if line.startswith(prefix):
                return line[len(prefix) :].strip()


async def _measure(
    args: argparse.Namespace, org_id: str, key: str, port: int, igris_pid: int
) -> dict[str, Any]:
    from compliance.audit.writer import StreamDrainer, live_message
    from governance.events import AUDIT_STREAM, Actor, Envelope
    from governance.runtime.hotstate import RedisHotState

    prefix = args.prefix
    hs = RedisHotState(common.REDIS_URL, prefix)
    scratch = Path(tempfile.mkdtemp(prefix="igris-live-feed-"))
    per_proc = [args.subscribers // args.procs] * args.procs
    for i in range(args.subscribers % args.procs):
        per_proc[i] += 1
    specs = [
        {
            "url": f"http://{common.HOST}:{port}{FEED_PATH}",
            "key": key,
            "connections": n,
            "events": args.n,
            "timeout_s": args.n / args.rate + 90,
            "redis_url": common.REDIS_URL,
            "channel": f"{prefix}ch:live:{org_id}",
            "result_path": str(scratch / f"subscriber-{i}.json"),
        }
        for i, n in enumerate(n for n in per_proc if n)
    ]
    procs = await _start_subscribers(specs)
    appended: dict[str, int] = {}
    published: dict[int, int] = {}
    committed: dict[int, int] = {}
    id_to_seq: dict[str, int] = {}

    async def publish(rows: Any) -> None:
        # Called by the writer right after its batch committed (and the stream acknowledged).
        commit_ns = time.time_ns()
        for row in rows:
            seq = row["seq"]
            committed[seq], id_to_seq[row["id"]] = commit_ns, seq
            message = live_message(row)
            published[seq] = time.time_ns()
            await hs.publish(f"live:{row['org_id']}", message)

    drainer = StreamDrainer(hs, batch=100, consumer="bench-live-feed", publish=publish)
    stop = asyncio.Event()

    async def write_forever() -> None:
        while not stop.is_set() or len(committed) < len(appended):
            await drainer.read_once(block_ms=20)

    try:
        for proc in procs:
            await _line(proc, "@ready", 120)
        if args.profile:
            os.kill(igris_pid, signal.SIGUSR1)
        writer = asyncio.create_task(write_forever())
        actor = Actor(kind="api_key", id=None, label="bench")
        interval = 1.0 / args.rate
        begin = time.monotonic()
        for i in range(args.n):
            await asyncio.sleep(max(0.0, begin + i * interval - time.monotonic()))
            envelope = Envelope(
                org_id=org_id,
                type="tool_call",
                source="proxy",
                actor=actor,
                data={"tool": "echo", "method": "tools/call", "server_slug": "bench", "i": i},
            ).as_dict()
            appended[envelope["id"]] = time.time_ns()
            await hs.stream_append(AUDIT_STREAM, {"event": json.dumps(envelope)})
        stop.set()
        async with asyncio.timeout(60):
            await writer
        results = []
        for proc, spec in zip(procs, specs, strict=True):
            await _line(proc, "@result", 180)
            results.append(json.loads(Path(spec["result_path"]).read_text()))
        if args.profile:
            await _dump_profile(igris_pid, Path(args.profile))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        await hs.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return _report(args, results, appended, published, committed, id_to_seq)


async def _dump_profile(pid: int, out: Path) -> None:
    """Stop the profiler of the igris process and wait for its stats file (before it stops)."""
    before = out.stat().st_mtime_ns if out.exists() else None
    os.kill(pid, signal.SIGUSR2)
    async with asyncio.timeout(30):
        while not out.exists() or out.stat().st_mtime_ns == before:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # dump_stats writes in one go; let it finish


def _report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    appended: dict[str, int],
    published: dict[int, int],
    committed: dict[int, int],
    id_to_seq: dict[str, int],
) -> dict[str, Any]:
    append_by_seq = {id_to_seq[i]: t for i, t in appended.items() if i in id_to_seq}
    pub, commit, append, base = [], [], [], []
    by_event: dict[int, list[int]] = {}  # seq -> publish_to_receipt of every connection
    missing = duplicates = out_of_order = 0
    connections = 0
    for result in results:
        for flat in result["receipts"]:
            connections += 1
            pairs = list(zip(flat[::2], flat[1::2], strict=True))
            seqs = [seq for seq, _ in pairs]
            duplicates += len(seqs) - len(set(seqs))
            out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
            missing += len(set(published) - set(seqs))
            for seq, t in pairs:
                if seq in published:
                    pub.append(t - published[seq])
                    by_event.setdefault(seq, []).append(t - published[seq])
                    commit.append(t - committed[seq])
                    append.append(t - append_by_seq[seq])
        flat = result["baseline"]
        base += [
            t - published[seq]
            for seq, t in zip(flat[::2], flat[1::2], strict=True)
            if seq in published
        ]
    summary = common.latency_summary(pub)
    end_to_end = common.latency_summary(append)
    return {
        "measured": True,
        "subscribers": args.subscribers,
        "subscriber_processes": len(results),
        "connections_reporting": connections,
        "events": args.n,
        "rate_per_s": args.rate,
        "stored_and_published": len(published),
        "receipts": len(pub),
        "receipts_expected": len(published) * args.subscribers,
        "missing": missing,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "failures": [f for r in results for f in r["failures"]][:20],
        "publish_to_receipt": summary,
        # Per event: its first connection's receipt (a high one means igris or the machine
        # stalled, e.g. a garbage collection pause, before the fan-out began) and its last one
        # (the fan-out to every connection done).
        "first_receipt_per_event": common.latency_summary([min(v) for v in by_event.values()]),
        "last_receipt_per_event": common.latency_summary([max(v) for v in by_event.values()]),
        "commit_to_receipt": common.latency_summary(commit),
        "append_to_receipt": end_to_end,
        "baseline_publish_to_receipt": common.latency_summary(base),
        "target": {
            "what": "publish_to_receipt p99 over all subscribers",
            "p99_ms_max": TARGET_P99_MS,
            "met": bool(summary.get("p99_ms") is not None and summary["p99_ms"] <= TARGET_P99_MS),
        },
        # For bench/run_all.py's summary: the proxy answers right after its stream append.
        "answered": len(appended),
        "seen_on_feed": len(published) if not missing else None,
        "lag_after_answer": end_to_end,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="events to publish")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--procs", type=int, default=4, help="subscriber processes")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--skip-migrate", action="store_true")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="serve igris under cProfile (event-loop thread CPU time) while events are "
        "published, and write the stats to PATH (pstats format); latencies are then inflated",
    )
    args = parser.parse_args()
    args.prefix = common.new_prefix()
    report: dict[str, Any] = {
        "what": f"live feed delivery to {args.subscribers} SSE subscribers of one organisation",
        "machine": common.machine_facts(),
    }
    common.exit_on_sigterm()
    common.setup_django(args.prefix)
    if not args.skip_migrate:
        report["database"] = common.ensure_database()
    stack = common.Stack(args.prefix)
    try:
        seeded = common.seed({}, extra_scopes=("read",))
        if args.profile:
            igris, port = stack.igris_profiled(Path(args.profile).resolve())
        else:
            igris, port = stack.igris(workers=1)
        import uvloop

        cpu_before = common.cpu_seconds(common.process_tree(igris.pid))
        started = time.monotonic()
        try:
            report.update(
                uvloop.run(_measure(args, seeded.org_id, seeded.api_key, port, igris.pid))
            )
            elapsed = time.monotonic() - started
            cpu = common.cpu_seconds(common.process_tree(igris.pid)) - cpu_before
            report["igris_cpu"] = {"seconds": round(cpu, 2), "cores": round(cpu / elapsed, 2)}
        except Exception as exc:
            report.update(measured=False, reason=f"not measured: {exc!r}")
    finally:
        stack.stop_all()
        try:
            report["redis_keys_removed"] = common.cleanup_redis(args.prefix)
        except Exception as exc:
            report["redis_cleanup_error"] = repr(exc)
    common.write_result("live_feed", report)
    shown = {k: v for k, v in report.items() if k not in ("machine",)}
    print(f"[live_feed] {json.dumps(shown)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "subscribe":
        sys.exit(subscriber_main(sys.argv[2]))
    sys.exit(main())
