"""Live feed lag: from a proxied call's answer to its event on the live feed (SSE /api/v1/events).

The feed is served by governance/consumers.py (DESIGN.md §2). While that module does not exist
this records "not measured" and exits. When it exists, a best-effort measurement runs: the bench
stack (demo upstream, igris 1 worker, audit writer) and one organisation; a client subscribes to
/api/v1/events with a key holding the `proxy` and `read` scopes, then makes N proxied echo calls
one at a time, each with a unique text, and times how long after each answer that text shows up
on the feed (the event goes proxy -> Redis stream -> audit writer -> PostgreSQL -> publish ->
feed). If the feed answers anything but a 200 event stream, the reason is recorded instead.

    .venv/bin/python bench/live_feed.py [-n 200] [--skip-migrate]

Writes bench/results/live_feed.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

CONSUMERS = common.ROOT / "governance" / "consumers.py"
FEED_PATH = "/api/v1/events"


async def _measure(base: str, api_key: str, n: int) -> dict[str, Any]:
    import aiohttp

    seen: dict[str, float] = {}
    auth = {"Authorization": f"Bearer {api_key}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        feed = await asyncio.wait_for(
            http.get(base + FEED_PATH, headers={**auth, "Accept": "text/event-stream"}), 30
        )
        ctype = feed.headers.get("content-type", "")
        if feed.status != 200 or not ctype.startswith("text/event-stream"):
            body = (await feed.read())[:300]
            return {
                "measured": False,
                "reason": f"not measured: {FEED_PATH} answered {feed.status} {ctype} {body!r}",
            }

        async def read_feed() -> None:
            async for line in feed.content:
                text = line.decode(errors="replace")
                if "live-" in text:
                    now = time.perf_counter()
                    for token in text.split('"'):
                        if token.startswith("live-") and token not in seen:
                            seen[token] = now

        reader = asyncio.create_task(read_feed())
        answered: dict[str, float] = {}
        errors = 0
        headers = dict(common.modern_headers(api_key))
        for i in range(n):
            token = f"live-{i:06d}"
            async with http.post(
                base + "/proxy/bench-live/mcp",
                data=common.echo_body(token, i + 1),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as r:
                body = await r.read()
                if r.status == 200 and common.expected_fragment(token).encode() in body:
                    answered[token] = time.perf_counter()
                else:
                    errors += 1
        deadline = time.monotonic() + 30
        while len(seen.keys() & answered.keys()) < len(answered) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        reader.cancel()
        feed.close()
    lags = [int((seen[t] - answered[t]) * 1e9) for t in answered if t in seen]
    return {
        "measured": True,
        "calls": n,
        "answered": len(answered),
        "errors": errors,
        "seen_on_feed": len(lags),
        "missing_on_feed": len(answered) - len(lags),
        "lag_after_answer": common.latency_summary(lags),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--skip-migrate", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "what": "live feed lag: proxied call answered -> event on /api/v1/events",
        "machine": common.machine_facts(),
    }
    if not CONSUMERS.exists():
        report.update(
            measured=False,
            reason="not measured: live feed not built yet (governance/consumers.py is absent)",
        )
        common.write_result("live_feed", report)
        print(f"[live_feed] {report['reason']}", flush=True)
        return 0

    common.exit_on_sigterm()
    prefix = common.new_prefix()
    common.setup_django(prefix)
    if not args.skip_migrate:
        report["database"] = common.ensure_database()
    stack = common.Stack(prefix)
    try:
        stack.audit_writer()
        _up, up_port = stack.upstream(json_response=True)
        seeded = common.seed(
            {"bench-live": f"http://127.0.0.1:{up_port}/mcp"}, extra_scopes=("read",)
        )
        _igris, port = stack.igris(workers=1)
        import uvloop

        try:
            report.update(uvloop.run(_measure(f"http://127.0.0.1:{port}", seeded.api_key, args.n)))
        except Exception as exc:
            report.update(measured=False, reason=f"not measured: {exc!r}")
    finally:
        stack.stop_all()
        try:
            report["redis_keys_removed"] = common.cleanup_redis(prefix)
        except Exception as exc:
            report["redis_cleanup_error"] = repr(exc)
    common.write_result("live_feed", report)
    print(f"[live_feed] {json.dumps({k: v for k, v in report.items() if k != 'machine'})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
