"""Memory per idle legacy session and per open SSE stream, in the igris web process.

Method (best effort, documented in the result):

1. Start the stack (demo upstream answering JSON, igris on uvicorn with 1 worker, audit writer,
   PostgreSQL, Redis) and seed one organisation.
2. A client process (aiohttp on uvloop, separate from the servers) warms igris up: 20 legacy
   sessions and 5 GET streams, streams closed again, so lazy imports, caches and pools exist
   before the baseline.
3. Baseline: igris VmRSS (/proc/<pid>/status), its open file descriptors, Redis used_memory.
4. The client opens 500 legacy sessions through the proxy (initialize + notifications/
   initialized, 16 at a time), keeps them idle; after 2.5 s (the session recorder flushes every
   second) the same figures are read again.
5. The client opens 200 standalone GET SSE streams (legacy GET /proxy/<slug>/mcp with the
   session id) and holds them open; after 2.5 s the figures are read again.

VmRSS moves in pages and the allocator keeps freed memory, so a delta is an upper bound of what
one more session or stream costs at that scale, not an exact size. Idle legacy sessions live in
Redis (the session binding), so their cost there is reported too.

    .venv/bin/python bench/memory.py [--sessions 500] [--streams 200] [--skip-migrate]

Writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

WARM_SESSIONS = 20
WARM_STREAMS = 5
SETTLE_S = 2.5


# --- client process ----------------------------------------------------------------------------


async def _client(spec: dict[str, Any]) -> None:
    import aiohttp

    url, key = spec["url"], spec["api_key"]
    base_headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    init_body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": common.LEGACY_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "igris-bench-memory", "version": "1"},
            },
        }
    )
    initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def command() -> str:
        line = await asyncio.wait_for(reader.readline(), timeout=120)
        return line.decode().strip()

    def say(tag: str, data: dict[str, Any]) -> None:
        print(f"@{tag} {json.dumps(data)}", flush=True)

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
    short = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:

        async def open_session(errors: dict[str, int]) -> str | None:
            try:
                async with http.post(url, data=init_body, headers=base_headers, timeout=short) as r:
                    await r.read()
                    sid = r.headers.get("mcp-session-id")
                    if r.status != 200 or not sid:
                        errors[f"initialize_{r.status}"] = (
                            errors.get(f"initialize_{r.status}", 0) + 1
                        )
                        return None
                headers = dict(
                    base_headers,
                    **{"Mcp-Session-Id": sid, "MCP-Protocol-Version": common.LEGACY_VERSION},
                )
                async with http.post(url, data=initialized, headers=headers, timeout=short) as r:
                    await r.read()
                    if r.status != 202:
                        errors[f"initialized_{r.status}"] = (
                            errors.get(f"initialized_{r.status}", 0) + 1
                        )
                        return None
                return sid
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return None

        async def open_sessions(n: int) -> tuple[list[str], dict[str, int]]:
            errors: dict[str, int] = {}
            out: list[str] = []
            sem = asyncio.Semaphore(16)

            async def one() -> None:
                async with sem:
                    sid = await open_session(errors)
                    if sid:
                        out.append(sid)

            await asyncio.gather(*(one() for _ in range(n)))
            return out, errors

        async def open_stream(sid: str, errors: dict[str, int]) -> Any:
            headers = {
                "Authorization": f"Bearer {key}",
                "Accept": "text/event-stream",
                "Mcp-Session-Id": sid,
                "MCP-Protocol-Version": common.LEGACY_VERSION,
            }
            try:
                r = await asyncio.wait_for(http.get(url, headers=headers), timeout=30)
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return None
            ctype = r.headers.get("content-type", "")
            if r.status != 200 or not ctype.startswith("text/event-stream"):
                errors[f"get_{r.status}"] = errors.get(f"get_{r.status}", 0) + 1
                r.close()
                return None
            return r

        async def open_streams(sids: list[str]) -> tuple[list[Any], dict[str, int]]:
            errors: dict[str, int] = {}
            sem = asyncio.Semaphore(16)

            async def one(sid: str) -> Any:
                async with sem:
                    return await open_stream(sid, errors)

            got = await asyncio.gather(*(one(s) for s in sids))
            return [r for r in got if r is not None], errors

        warm_sids, warm_errors = await open_sessions(WARM_SESSIONS)
        warm_streams, warm_stream_errors = await open_streams(warm_sids[:WARM_STREAMS])
        await asyncio.sleep(0.5)
        for r in warm_streams:
            r.close()
        say(
            "warm",
            {
                "sessions": len(warm_sids),
                "streams": len(warm_streams),
                "errors": {**warm_errors, **warm_stream_errors},
            },
        )

        if await command() != "sessions":
            return
        t0 = time.perf_counter()
        sids, errors = await open_sessions(spec["sessions"])
        say(
            "sessions",
            {"opened": len(sids), "errors": errors, "seconds": round(time.perf_counter() - t0, 2)},
        )

        if await command() != "streams":
            return
        t0 = time.perf_counter()
        streams, stream_errors = await open_streams(sids[: spec["streams"]])
        say(
            "streams",
            {
                "opened": len(streams),
                "errors": stream_errors,
                "seconds": round(time.perf_counter() - t0, 2),
            },
        )
        await command()  # "quit" (or EOF / timeout)
        for r in streams:
            r.close()


# --- orchestrator ------------------------------------------------------------------------------


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def redis_prefix_bytes(prefix: str) -> tuple[int, int]:
    """MEMORY USAGE summed over this run's keys (the audit stream left out: the writer drains
    it, its size is not per session). Scoped by prefix because Redis is shared."""
    import redis

    client = redis.Redis.from_url(common.REDIS_URL)
    try:
        total = keys = 0
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            if b"stream" in key:
                continue
            total += int(client.memory_usage(key, samples=0) or 0)
            keys += 1
        return total, keys
    finally:
        client.close()


def snapshot(igris_pid: int, upstream_pid: int, prefix: str) -> dict[str, Any]:
    redis_bytes, redis_keys = redis_prefix_bytes(prefix)
    return {
        "igris_rss_kib": common.rss_kib(igris_pid),
        "igris_fds": _fds(igris_pid),
        "upstream_rss_kib": common.rss_kib(upstream_pid),
        "redis_bytes": redis_bytes,
        "redis_keys": redis_keys,
    }


def delta(after: dict[str, Any], before: dict[str, Any], count: int) -> dict[str, Any]:
    d_rss = after["igris_rss_kib"] - before["igris_rss_kib"]
    d_redis = after["redis_bytes"] - before["redis_bytes"]
    d_up = after["upstream_rss_kib"] - before["upstream_rss_kib"]
    return {
        "count": count,
        "igris_rss_delta_kib": d_rss,
        "igris_rss_per_item_kib": round(d_rss / count, 2) if count else None,
        "igris_fds_delta": after["igris_fds"] - before["igris_fds"],
        "redis_keys_delta": after["redis_keys"] - before["redis_keys"],
        "redis_delta_bytes": d_redis,
        "redis_per_item_bytes": round(d_redis / count) if count else None,
        "upstream_rss_per_item_kib": round(d_up / count, 2) if count else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--skip-migrate", action="store_true")
    args = parser.parse_args()
    if args.streams > args.sessions:
        parser.error("--streams must not exceed --sessions (one GET stream per session)")

    common.exit_on_sigterm()
    common.raise_priority()
    prefix = common.new_prefix()
    common.setup_django(prefix)
    report: dict[str, Any] = {
        "what": "igris RSS per idle legacy session and per open GET SSE stream",
        "machine": common.machine_facts(),
        "method": (
            "VmRSS of the igris process (uvicorn, 1 worker) from /proc/<pid>/status after a "
            f"warm-up ({WARM_SESSIONS} sessions, {WARM_STREAMS} streams), then after opening "
            f"{args.sessions} legacy sessions (initialize + notifications/initialized through the "
            f"proxy, left idle) and after opening {args.streams} GET SSE streams on them; "
            f"{SETTLE_S} s settle before each reading. Deltas divided by the count. RSS moves in "
            "pages and the allocator keeps freed memory: an upper bound at that scale, not an "
            "exact size. Redis: MEMORY USAGE summed over this run's keys (session bindings etc.)."
        ),
        "logs": str(common.LOG_DIR),
    }
    if not args.skip_migrate:
        report["database"] = common.ensure_database()

    stack = common.Stack(prefix)
    client: subprocess.Popen[str] | None = None
    try:
        stack.audit_writer()
        upstream, up_port = stack.upstream(json_response=True)
        seeded = common.seed({"bench-mem": f"http://127.0.0.1:{up_port}/mcp"})
        igris, port = stack.igris(workers=1)
        spec = {
            "url": f"http://127.0.0.1:{port}/proxy/bench-mem/mcp",
            "api_key": seeded.api_key,
            "sessions": args.sessions,
            "streams": args.streams,
        }
        client = subprocess.Popen(
            [sys.executable, __file__, "client", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert client.stdin is not None and client.stdout is not None

        def expect(tag: str) -> dict[str, Any]:
            deadline = time.monotonic() + 120
            assert client is not None and client.stdout is not None
            while time.monotonic() < deadline:
                line = client.stdout.readline()
                if not line:
                    err = client.stderr.read() if client.stderr else ""
                    raise RuntimeError(f"memory client ended before @{tag}: {err[-2000:]}")
                if line.startswith(f"@{tag} "):
                    return dict(json.loads(line[len(tag) + 2 :]))
            raise RuntimeError(f"memory client: no @{tag} within 120 s")

        def tell(word: str) -> None:
            assert client is not None and client.stdin is not None
            client.stdin.write(word + "\n")
            client.stdin.flush()

        report["warm_up"] = expect("warm")
        time.sleep(SETTLE_S)
        base = snapshot(igris.pid, upstream.pid, prefix)
        tell("sessions")
        report["sessions_opened"] = expect("sessions")
        time.sleep(SETTLE_S)
        after_sessions = snapshot(igris.pid, upstream.pid, prefix)
        tell("streams")
        report["streams_opened"] = expect("streams")
        time.sleep(SETTLE_S)
        after_streams = snapshot(igris.pid, upstream.pid, prefix)
        tell("quit")
        report["readings"] = {
            "baseline": base,
            "after_sessions": after_sessions,
            "after_streams": after_streams,
        }
        report["per_idle_legacy_session"] = delta(
            after_sessions, base, report["sessions_opened"]["opened"]
        )
        report["per_open_sse_stream"] = delta(
            after_streams, after_sessions, report["streams_opened"]["opened"]
        )
        report["ok"] = (
            report["sessions_opened"]["opened"] == args.sessions
            and report["streams_opened"]["opened"] == args.streams
        )
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.wait(timeout=10)
            if client.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(client.pid, 9)
                client.wait()
        stack.stop_all()
        try:
            report["redis_keys_removed"] = common.cleanup_redis(prefix)
        except Exception as exc:
            report["redis_cleanup_error"] = repr(exc)
    path = common.write_result("memory", report)
    print(f"[memory] written to {path}", flush=True)
    for key in ("per_idle_legacy_session", "per_open_sse_stream"):
        if key in report:
            print(f"[memory] {key}: {report[key]}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "client":
        import uvloop

        uvloop.run(_client(json.loads(sys.argv[2])))
    else:
        sys.exit(main())
