"""Live feed fan-out: the hub over the hot state against a Channels channel layer (channels-redis).

The question: how should one published event reach the live feed's connections of a web
process? Three ways, each measured with `--subscribers` (200) subscribers of one organisation in
one subscriber process (uvloop, like a web worker), while this process publishes `-n` events at
`--rate` per second:

- `hub`: compliance/live/fanout.py as the consumers use it: one hot-state subscription to
  `live:<org>` per organisation per process, the event rendered once (`LiveEvent`) and put in
  each connection's buffer (`Feed`); the publisher is `RedisHotState.publish`, as the audit
  writer's.
- `layer_core`: `channels_redis.core.RedisChannelLayer`, the layer Channels documents: each
  connection a channel (`new_channel`) in the group `live.<org>` (`group_add`); the publisher is
  `group_send`, which stores one copy per channel in Redis; the process pops them one by one.
- `layer_pubsub`: `channels_redis.pubsub.RedisPubSubChannelLayer`: one Redis subscription per
  group per process, one copy per channel in memory.

The layers deliver the writer's message as is (`{"type": "live.event", "event": <the JSON the
hub gets>}`); the hub's receipt includes rendering it, so the comparison leans towards the layers.
Latencies: publish -> the subscriber's task has the event (time.time_ns, same machine). CPU: the
subscriber process's user+system seconds while the events are published, per event.

channels-redis is not a dependency of igris; measure the layers with it added for the run only:

    uv run --frozen --with channels-redis==4.3.0 python bench/live_fanout.py \
        [-n 200] [--subscribers 200] [--rate 20] [--cases hub,layer_core,layer_pubsub]

Without channels-redis the layer cases are reported as not measured. Writes
bench/results/live_fanout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

CASES = ("hub", "layer_core", "layer_pubsub")


# --- subscriber process ---------------------------------------------------------------------------


def _layer(case: str, prefix: str) -> Any:
    if case == "layer_core":
        from channels_redis.core import RedisChannelLayer

        return RedisChannelLayer(hosts=[common.REDIS_URL], prefix=f"{prefix}asgi", capacity=1000)
    from channels_redis.pubsub import RedisPubSubChannelLayer

    return RedisPubSubChannelLayer(hosts=[common.REDIS_URL], prefix=f"{prefix}asgi")


async def _subscribe(spec: dict[str, Any]) -> dict[str, Any]:
    case, n, events = spec["case"], spec["subscribers"], spec["events"]
    receipts: list[list[int]] = [[] for _ in range(n)]  # per subscriber: seq, t_ns, ...
    done = asyncio.Event()
    finished = {"n": 0}

    def note(got: list[int], seq: int) -> None:
        got += (seq, time.time_ns())
        if len(got) >= 2 * events:
            finished["n"] += 1
            if finished["n"] == n:
                done.set()

    tasks: list[asyncio.Task[None]] = []
    layer: Any = None
    if case == "hub":
        from compliance.live.fanout import Feed, get_hub

        feeds = [Feed(spec["org_id"], 1000) for _ in range(n)]
        for feed in feeds:
            feed.replaying = False
            await get_hub().join(feed)

        async def follow(feed: Feed, got: list[int]) -> None:
            while True:
                waiter = feed.wait()
                if waiter is not None:
                    await waiter
                for event in feed.take():
                    note(got, event.seq)

        tasks = [asyncio.create_task(follow(f, r)) for f, r in zip(feeds, receipts, strict=True)]
    else:
        layer = _layer(case, spec["prefix"])
        names = [await layer.new_channel() for _ in range(n)]
        for name in names:
            await layer.group_add(spec["group"], name)

        async def follow_layer(name: str, got: list[int]) -> None:
            while True:
                message = await layer.receive(name)
                note(got, json.loads(message["event"])["seq"])

        tasks = [
            asyncio.create_task(follow_layer(name, r))
            for name, r in zip(names, receipts, strict=True)
        ]
        await asyncio.sleep(0.5)  # the pubsub layer subscribes in the background
    print("@ready", flush=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        async with asyncio.timeout(spec["timeout_s"]):
            await done.wait()
    except TimeoutError:
        pass
    after = resource.getrusage(resource.RUSAGE_SELF)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if layer is not None:
        if hasattr(layer, "flush"):
            await layer.flush()
        if hasattr(layer, "close_pools"):
            await layer.close_pools()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"receipts": receipts, "cpu_s": cpu}


def subscriber_main(spec_json: str) -> int:
    import uvloop

    spec = json.loads(spec_json)
    common.setup_django(spec["prefix"])
    result = uvloop.run(_subscribe(spec))
    Path(spec["result_path"]).write_text(json.dumps(result))
    print("@result", flush=True)
    return 0


# --- the measurement ----------------------------------------------------------------------------


async def _line(proc: asyncio.subprocess.Process, prefix: str, timeout_s: float) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                raise RuntimeError(f"subscriber exited before {prefix}")
            if raw.decode().startswith(prefix):
                return


async def _case(args: argparse.Namespace, case: str, scratch: Path) -> dict[str, Any]:
    from governance.runtime.hotstate import RedisHotState

    org_id = "00000000-0000-0000-0000-00000000beef"
    group = f"live.{org_id}"
    spec = {
        "case": case,
        "prefix": args.prefix,
        "org_id": org_id,
        "group": group,
        "subscribers": args.subscribers,
        "events": args.n,
        "timeout_s": args.n / args.rate + 60,
        "result_path": str(scratch / f"{case}.json"),
    }
    proc = await asyncio.create_subprocess_exec(
        common.PY,
        __file__,
        "subscribe",
        json.dumps(spec),
        stdout=asyncio.subprocess.PIPE,
        cwd=common.ROOT,
        start_new_session=True,
    )
    hs = RedisHotState(common.REDIS_URL, args.prefix)
    layer = _layer(case, args.prefix) if case != "hub" else None
    published: dict[int, int] = {}
    try:
        await _line(proc, "@ready", 120)
        interval, begin = 1.0 / args.rate, time.monotonic()
        for seq in range(1, args.n + 1):
            await asyncio.sleep(max(0.0, begin + (seq - 1) * interval - time.monotonic()))
            # The writer's live message: an envelope as AuditEvent.as_envelope() gives it.
            message = json.dumps(
                {
                    "seq": seq,
                    "type": "tool_call",
                    "org_id": org_id,
                    "data": {"tool": "echo", "server_slug": "bench", "i": seq},
                    "hash": "0" * 64,
                }
            )
            published[seq] = time.time_ns()
            if layer is None:
                await hs.publish(f"live:{org_id}", message)
            else:
                await layer.group_send(group, {"type": "live.event", "event": message})
        await _line(proc, "@result", args.n / args.rate + 120)
        result = json.loads(Path(spec["result_path"]).read_text())
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await hs.close()
        if layer is not None and hasattr(layer, "close_pools"):
            await layer.close_pools()
    latencies, by_event = [], {}
    missing = 0
    for flat in result["receipts"]:
        pairs = list(zip(flat[::2], flat[1::2], strict=True))
        missing += len(set(published) - {seq for seq, _ in pairs})
        for seq, t in pairs:
            latencies.append(t - published[seq])
            by_event.setdefault(seq, []).append(t - published[seq])
    return {
        "receipts": len(latencies),
        "receipts_expected": args.n * args.subscribers,
        "missing": missing,
        "publish_to_receipt": common.latency_summary(latencies),
        "last_receipt_per_event": common.latency_summary([max(v) for v in by_event.values()]),
        "subscriber_cpu_s": round(result["cpu_s"], 3),
        "subscriber_cpu_ms_per_event": round(1000 * result["cpu_s"] / args.n, 3),
    }


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="igris-live-fanout-"))
    out: dict[str, Any] = {}
    for case in args.cases:
        if case != "hub":
            try:
                import channels_redis  # noqa: F401
            except ImportError:
                out[case] = {"measured": False, "reason": "channels-redis is not installed"}
                continue
        out[case] = {"measured": True, **await _case(args, case, scratch)}
        print(f"[live_fanout] {case}: {json.dumps(out[case])}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="events to publish")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {sorted(unknown)}")
    args.prefix = common.new_prefix()
    common.exit_on_sigterm()
    common.setup_django(args.prefix)
    import uvloop

    report: dict[str, Any] = {
        "what": f"fan-out of one organisation's live events to {args.subscribers} subscribers "
        "of one process: the hot-state hub against channels-redis layers",
        "machine": common.machine_facts(),
        "events": args.n,
        "rate_per_s": args.rate,
        "subscribers": args.subscribers,
    }
    try:
        report["cases"] = uvloop.run(_measure(args))
    finally:
        report["redis_keys_removed"] = common.cleanup_redis(args.prefix)
    common.write_result("live_fanout", report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "subscribe":
        sys.exit(subscriber_main(sys.argv[2]))
    sys.exit(main())
