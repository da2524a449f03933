"""`make bench`: every benchmark in one run, then bench/results/SUMMARY.md.

Steps, each a separate process with a time limit (stopped with its whole process group, and
every step stops the servers it started):

1. proxy_overhead.py   direct vs igris, c=1 and c=16, 1 and 2 workers, zero lost audit events
2. bench_policy.py     policy engine (someone else's script; skipped with a note if absent)
3. bench_audit_writer.py  audit writer throughput
4. bench_hotstate.py   rate limiting on both hot-state backends
5. memory.py           RSS per idle legacy session and per open SSE stream
6. live_feed.py        live feed lag (or "not measured" while governance/consumers.py is absent)
7. observe_dashboard.py  /observe/ server time per window and heat-map switch at 1M audit rows

Each writes bench/results/<name>.json; this script folds them into SUMMARY.md with the targets,
met/missed, and the machine facts. Exit status 1 if a step failed to produce its result (a
missed target is a finding, not a failure).

    .venv/bin/python bench/run_all.py [--quick] [--only proxy_overhead,memory]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

BENCH = common.ROOT / "bench"
SUMMARY = common.RESULTS / "SUMMARY.md"


def steps(quick: bool) -> list[dict[str, Any]]:
    env_db = {"DATABASE_URL": common.DATABASE_URL, "REDIS_URL": common.REDIS_URL}
    return [
        {
            "name": "proxy_overhead",
            "script": "proxy_overhead.py",
            "args": ["--skip-migrate", *(["--quick"] if quick else [])],
            "result": "proxy_overhead.json",
            "timeout_s": 540,
        },
        {
            "name": "policy",
            "script": "bench_policy.py",
            "args": ["-n", "2000"] if quick else [],
            "result": "policy.json",
            "timeout_s": 240,
            "foreign": True,
        },
        {
            "name": "audit_writer",
            "script": "bench_audit_writer.py",
            "args": ["-n", "2000" if quick else "10000"],
            "result": "audit_writer.json",
            "timeout_s": 300,
            "env": env_db,
            "foreign": True,
        },
        {
            "name": "hotstate",
            "script": "bench_hotstate.py",
            "args": ["--redis-url", common.REDIS_URL, "-n", "1000" if quick else "5000"],
            "result": "hotstate.json",
            "timeout_s": 180,
            "foreign": True,
        },
        {
            "name": "memory",
            "script": "memory.py",
            "args": [
                "--skip-migrate",
                *(["--sessions", "100", "--streams", "50"] if quick else []),
            ],
            "result": "memory.json",
            "timeout_s": 240,
        },
        {
            "name": "live_feed",
            "script": "live_feed.py",
            "args": ["--skip-migrate", *(["-n", "50"] if quick else [])],
            "result": "live_feed.json",
            "timeout_s": 180,
        },
        {
            # Seeds 1M audit events once (about 6 min on 2 cores), then reuses them.
            "name": "observe_dashboard",
            "script": "observe_dashboard.py",
            "args": ["--quick"] if quick else [],
            "result": "observe_dashboard.json",
            "timeout_s": 1200,
        },
    ]


def run_step(step: dict[str, Any]) -> dict[str, Any]:
    script = BENCH / step["script"]
    record: dict[str, Any] = {"name": step["name"], "script": f"bench/{step['script']}"}
    if not script.exists():
        record.update(status="skipped", note=f"bench/{step['script']} does not exist yet")
        print(f"[run_all] {step['name']}: skipped ({record['note']})", flush=True)
        return record
    result_path = common.RESULTS / step["result"]
    before = result_path.stat().st_mtime if result_path.exists() else None
    env = dict(os.environ, PYTHONUNBUFFERED="1", **step.get("env", {}))
    cmd = [common.PY, str(script), *step["args"]]
    record["command"] = " ".join(["python", f"bench/{step['script']}", *step["args"]])
    print(f"[run_all] {step['name']}: {record['command']}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=common.ROOT, env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=step["timeout_s"])
    except subprocess.TimeoutExpired:
        rc = None
        record["note"] = f"stopped after its {step['timeout_s']} s limit"
    finally:
        if proc.poll() is None:
            # SIGTERM first: the bench scripts turn it into SystemExit and stop their servers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    record["seconds"] = round(time.monotonic() - start, 1)
    record["returncode"] = rc
    fresh = result_path.exists() and result_path.stat().st_mtime != before
    if rc == 0 and fresh:
        record["status"] = "ok"
    else:
        record["status"] = "failed"
        if not fresh:
            record["note"] = (record.get("note", "") + " no fresh result file").strip()
    record["result"] = f"bench/results/{step['result']}" if fresh else None
    print(f"[run_all] {step['name']}: {record['status']} in {record['seconds']} s", flush=True)
    return record


# --- summary -----------------------------------------------------------------------------------


def _load(name: str, records: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    rec = records.get(name)
    if not rec or not rec.get("result"):
        return None
    try:
        return dict(json.loads((common.ROOT / rec["result"]).read_text()))
    except (OSError, ValueError):
        return None


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            tag = str(i)
            if isinstance(item, dict):
                for key in ("name", "rules", "size", "case"):
                    if isinstance(item.get(key), (str, int)):
                        tag = f"{key}={item[key]}"
                        break
            out.extend(_flatten(item, f"{prefix}[{tag}]"))
    elif isinstance(data, (int, float)):  # bool included
        out.append((prefix, data))
    return out


def _generic(data: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| figure | value |", "|---|---|"]
    rows = [
        (k, v)
        for k, v in _flatten({k: v for k, v in data.items() if k not in skip})
        if not k.startswith(("machine", "load_average", "when", "python", "cpus"))
        and not k.endswith(".n")
    ]
    for k, v in rows[:90]:
        lines.append(f"| {k} | {_f(v)} |")
    if len(rows) > 90:
        lines.append(f"| ... | {len(rows) - 90} more figures in the JSON |")
    return lines


def _proxy_section(r: dict[str, Any]) -> list[str]:
    out: list[str] = []
    labels = {
        "json": "demo upstream, JSON (production shape)",
        "sse": "demo upstream, SSE",
        "fast": "raw ASGI echo (igris' ceiling)",
    }
    out += [
        "### Added latency at c=1 (direct and igris interleaved, one client)",
        "",
        "| upstream | direct p50 / p90 / p99 / max (ms) | igris p50 / p90 / p99 / max (ms) "
        "| added p50 | added p99 | errors (direct / igris) |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in labels.items():
        if key not in r:
            continue
        c1 = r[key]["c1"]
        d, x = c1["targets"]["direct"], c1["targets"]["igris"]
        dl, xl = d["latency"], x["latency"]
        added = c1.get("added_ms", {})
        out.append(
            f"| {label} | {_f(dl.get('p50_ms'))} / {_f(dl.get('p90_ms'))} / "
            f"{_f(dl.get('p99_ms'))} / {_f(dl.get('max_ms'))} | {_f(xl.get('p50_ms'))} / "
            f"{_f(xl.get('p90_ms'))} / {_f(xl.get('p99_ms'))} / {_f(xl.get('max_ms'))} | "
            f"**{_f(added.get('p50'))}** | **{_f(added.get('p99'))}** | "
            f"{d['error_count']} / {x['error_count']} |"
        )
    out += [
        "",
        "### Throughput and latency at c=16 (closed loop, each target alone)",
        "",
        "| upstream | target | calls/s | p50 (ms) | p99 (ms) | max (ms) | errors | "
        "cores: igris / upstream / writer / Redis / PG / loadgen / outside bench |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows: list[tuple[str, str, dict[str, Any], str]] = []
    for key, label in labels.items():
        if key in r:
            rows.append((label, "direct", r[key]["c16_direct"], "direct"))
            rows.append((label, "igris, 1 worker", r[key]["c16_igris"], "igris"))
        if f"{key}_2_workers" in r:
            rows.append((label, "igris, 2 workers", r[f"{key}_2_workers"]["c16_igris"], "igris"))
    for label, target, run, name in rows:
        t = run["targets"][name]
        lat = t["latency"]
        c = run.get("cores_used", {})
        cores = " / ".join(
            _f(c.get(k))
            for k in (
                "igris",
                "upstream",
                "audit_writer",
                "redis",
                "postgres",
                "loadgen",
                "outside_bench",
            )
        )
        out.append(
            f"| {label} | {target} | **{_f(t['throughput_rps'], 0)}** | {_f(lat.get('p50_ms'))} "
            f"| {_f(lat.get('p99_ms'))} | {_f(lat.get('max_ms'))} | {t['error_count']} | {cores} |"
        )
    out += [
        "",
        "### CPU per proxied call (ms of CPU, c=16, 1 worker)",
        "",
        "| upstream | igris | upstream | audit writer | Redis | PostgreSQL | load generator "
        "| sum | ceiling on all cores (calls/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    nproc = r.get("machine", {}).get("nproc") or os.cpu_count() or 1
    for key, label in labels.items():
        if key not in r:
            continue
        per = r[key]["c16_igris"].get("cpu_ms_per_call", {})
        parts = [per.get(k) for k in ("igris", "upstream", "audit_writer", "redis", "postgres")]
        total = sum(p for p in [*parts, per.get("loadgen")] if p)
        ceiling = 1000 * nproc / total if total else None
        out.append(
            f"| {label} | {' | '.join(_f(p, 3) for p in parts)} | {_f(per.get('loadgen'), 3)} "
            f"| {_f(total, 3)} | {_f(ceiling, 0)} |"
        )
    audit = r.get("audit_final") or r.get("audit", {})
    out += [
        "",
        f"**Audit:** {_f(audit.get('proxied_ok_calls'))} successful proxied calls, "
        f"{_f(audit.get('rows'))} `tool_call` rows in the audit table for the bench organisation, "
        f"**{_f(audit.get('lost'))} lost** (writer caught up {_f(audit.get('waited_s'))} s after "
        f"the load). Failed answers: {r.get('errors', {}).get('proxied')} proxied, "
        f"{r.get('errors', {}).get('direct')} direct.",
        "",
    ]
    return out


def _explain(r: dict[str, Any]) -> list[str]:
    """A data-driven paragraph: where the CPU goes, and what the profile says."""
    out: list[str] = []
    nproc = r.get("machine", {}).get("nproc") or 1
    run = r.get("json", {}).get("c16_igris")
    fast = r.get("fast", {}).get("c16_igris")
    if run:
        per = run.get("cpu_ms_per_call", {})
        total = sum(v for v in per.values() if v)
        outside = [
            v.get("cores_used", {}).get("outside_bench")
            for k in ("json", "sse", "fast")
            for v in (r.get(k, {}).get("c16_igris"), r.get(k, {}).get("c16_direct"))
            if v
        ]
        outside = [o for o in outside if o is not None]
        text = (
            f"With the demo upstream, one proxied call costs {_f(per.get('igris'), 2)} ms of CPU "
            f"in igris, {_f(per.get('upstream'), 2)} ms in the upstream, "
            f"{_f(per.get('audit_writer'), 2)} ms in the audit writer, "
            f"{_f(per.get('redis'), 2)} ms in Redis, {_f(per.get('postgres'), 2)} ms in "
            f"PostgreSQL and {_f(per.get('loadgen'), 2)} ms in the load generator: "
            f"{_f(total, 2)} ms in all, so {nproc} cores carry at most "
            f"~{_f(1000 * nproc / total if total else None, 0)} calls/s even with nothing else "
            "running."
        )
        if fast:
            fper = fast.get("cpu_ms_per_call", {})
            igris_ms = fper.get("igris")
            text += (
                f" Against the raw echo upstream igris still spends {_f(igris_ms, 2)} ms of CPU "
                "per call, so one worker tops out near "
                f"~{_f(1000 / igris_ms if igris_ms else None, 0)} calls/s on a core of its own."
            )
        if outside:
            text += (
                f" Processes outside the bench used {_f(min(outside), 2)} to {_f(max(outside), 2)} "
                "cores during the c=16 windows (see the table), which inflates every latency "
                "figure."
            )
        out += [text, ""]
    prof = r.get("profile")
    if prof:
        groups = {g["group"]: g["own_pct"] for g in prof.get("by_group", [])}
        cum = {row["function"]: row for row in prof.get("by_cum", [])}

        def cum_of(suffix: str) -> float | None:
            for name, row in cum.items():
                if name.endswith(suffix):
                    return float(row["cum_pct"])
            return None

        hot = cum_of("(wrapper)")
        anomalies = cum_of("anomalies.py:82(_check)") or cum_of("(_check)")
        forward = cum_of("(_forward)")
        text = (
            f"Profile of igris (cProfile, CPU time of the event-loop thread, c=16, "
            f"{_f(prof.get('under_profiler_rps'), 0)} calls/s under the profiler): own time by "
            "package — " + ", ".join(f"{g} {p}%" for g, p in list(groups.items())[:8]) + "."
        )
        if prof.get("redis_commands_per_call"):
            text += f" Redis commands per proxied call: {prof['redis_commands_per_call']}."
        if hot is not None:
            text += f" Hot-state calls (redis-py) take {hot}% of igris' CPU cumulatively"
            if anomalies is not None:
                text += f"; the post-answer anomaly check (proxy/anomalies.py) {anomalies}%"
            if forward is not None:
                text += f"; the upstream forward and answer {forward}%"
            text += "."
        out += [text, ""]
        out += [
            "Top functions by own CPU time:",
            "",
            "| function | own % | cum % |",
            "|---|---|---|",
        ]
        for row in prof.get("by_own", [])[:15]:
            out.append(f"| `{row['function']}` | {row['own_pct']} | {row['cum_pct']} |")
        out += [
            "",
            "Top igris functions by cumulative CPU time:",
            "",
            "| function | cum % |",
            "|---|---|",
        ]
        ours = [
            row
            for row in prof.get("by_cum", [])
            if row["function"].startswith(("proxy/", "governance/", "compliance/"))
        ]
        for row in ours[:15]:
            out.append(f"| `{row['function']}` | {row['cum_pct']} |")
        out.append("")
    return out


def _policy_section(p: dict[str, Any]) -> list[str]:
    sizes = p.get("sizes")
    if not isinstance(sizes, list) or not all(isinstance(x, dict) for x in sizes):
        return [*_generic(p, skip=("machine",)), ""]
    out = [
        f"{p.get('what', '')}. Target: decide p99 <= {_f(p.get('target_p99_us_at_10000'))} µs at "
        f"10,000 rules (target_met: {p.get('target_met')}).",
        "",
        "| rules | build ms | decide p50 / p99 µs (CPU) | decide p50 / p99 µs (wall) | naive "
        "first-match p50 / p99 µs (CPU) | filter 50-tool list p50 µs |",
        "|---|---|---|---|---|---|",
    ]
    for size in sizes:
        dec = size.get("decide", {})
        naive = size.get("naive_baseline", {})
        flt = size.get("filter_tools_50_wall", {})
        cpu, wall, ncpu = dec.get("cpu", {}), dec.get("wall", {}), naive.get("cpu", {})
        out.append(
            f"| {_f(size.get('rules'))} | {_f(size.get('build_ms'))} | {_f(cpu.get('p50_us'))} / "
            f"{_f(cpu.get('p99_us'))} | {_f(wall.get('p50_us'))} / {_f(wall.get('p99_us'))} | "
            f"{_f(ncpu.get('p50_us'))} / {_f(ncpu.get('p99_us'))} | {_f(flt.get('p50_us'))} |"
        )
    regex = p.get("regex_worst_case_ms_at_cap")
    if isinstance(regex, dict):
        out += [
            "",
            "Regex worst case at the 4 KiB cap (ms): "
            + ", ".join(f"`` {k} `` {_f(v)}" for k, v in regex.items())
            + ".",
        ]
    return [*out, ""]


def _other_targets(
    policy: dict[str, Any] | None,
    writer: dict[str, Any] | None,
    live: dict[str, Any] | None,
    observe: dict[str, Any] | None = None,
) -> list[str]:
    rows: list[str] = []
    if observe and isinstance(observe.get("worst"), dict):
        worst = observe["worst"]
        rows.append(
            f"| /observe/ p95 server time, worst page ({worst.get('window')}, "
            f"{worst.get('heat_map')}) at {_f((observe.get('seed') or {}).get('events'))} rows "
            f"| <= 300 ms | {_f(worst.get('page', {}).get('p95_ms'))} ms | "
            f"{'met' if observe.get('met') else '**missed**'} |"
        )
    if policy and isinstance(policy.get("target_met"), dict):
        big = next(
            (
                x
                for x in policy.get("sizes", [])
                if isinstance(x, dict) and x.get("rules") == 10_000
            ),
            {},
        )
        dec = big.get("decide", {})
        for kind, met in policy["target_met"].items():
            value = dec.get(kind, {}).get("p99_us")
            rows.append(
                f"| policy decide p99 at 10,000 rules ({kind} time) | <= "
                f"{_f(policy.get('target_p99_us_at_10000'))} µs | {_f(value)} µs | "
                f"{'met' if met else '**missed**'} |"
            )
    if writer and isinstance(writer.get("results"), dict) and writer.get("target_events_per_s"):
        results = writer["results"]
        for case in ("stream_live_publish_task", "stream", "stream_without_live_publish"):
            if isinstance(results.get(case), dict):
                value = results[case].get("events_per_s")
                target = writer["target_events_per_s"]
                met = value is not None and value >= target
                rows.append(
                    f"| audit writer, {case} | >= {_f(target)} events/s | {_f(value)} events/s | "
                    f"{'met' if met else '**missed**'} |"
                )
                break
    if live and isinstance(live.get("target"), dict):
        t = live["target"]
        value = (live.get("publish_to_receipt") or {}).get("p99_ms")
        rows.append(
            f"| live feed: {t.get('what')} | <= {_f(t.get('p99_ms_max'))} ms | {_f(value)} ms | "
            f"{'met' if t.get('met') else '**missed**'} |"
        )
    return rows


def _memory_section(m: dict[str, Any]) -> list[str]:
    s, st = m.get("per_idle_legacy_session", {}), m.get("per_open_sse_stream", {})
    return [
        "| item | count | igris RSS delta | per item | igris fds delta | Redis per item |",
        "|---|---|---|---|---|---|",
        f"| idle legacy session | {_f(s.get('count'))} | {_f(s.get('igris_rss_delta_kib'))} KiB "
        f"| **{_f(s.get('igris_rss_per_item_kib'))} KiB** | {_f(s.get('igris_fds_delta'))} | "
        f"{_f(s.get('redis_per_item_bytes'))} B |",
        f"| open GET SSE stream | {_f(st.get('count'))} | {_f(st.get('igris_rss_delta_kib'))} KiB "
        f"| **{_f(st.get('igris_rss_per_item_kib'))} KiB** | {_f(st.get('igris_fds_delta'))} | "
        f"{_f(st.get('redis_per_item_bytes'))} B |",
        "",
        f"Method: {m.get('method', '')}",
        "",
    ]


def _audit_writer_section(a: dict[str, Any]) -> list[str]:
    results = a.get("results")
    if not isinstance(results, dict):
        return _generic(a)
    out = [
        f"n = {_f(a.get('n'))} events, batch {_f(a.get('batch'))}, target "
        f"{_f(a.get('target_events_per_s'))} events/s.",
        "",
        "| case | events/s | seconds |",
        "|---|---|---|",
    ]
    for name, fig in results.items():
        if isinstance(fig, dict):
            out.append(f"| {name} | {_f(fig.get('events_per_s'))} | {_f(fig.get('seconds'), 3)} |")
    return [*out, ""]


def _observe_section(o: dict[str, Any]) -> list[str]:
    seed = o.get("seed") or {}
    out = [
        f"{_f(seed.get('events'))} events seeded with manage.py seed_audit_volume in "
        f"{_f(seed.get('wall_s'))} s ({_f(seed.get('us_per_event'))} µs per event"
        f"{', reused from an earlier run' if seed.get('reused') else ''}). Target: "
        f"{o.get('target')}.",
        "",
        "| window | heat map | calls in window | page p50 / p95 ms | queries | empty org p50 ms "
        "| selector alone p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in o.get("cases", []):
        page, empty, sel = c["page"], c["empty_org_page"], c["selector_only"]
        out.append(
            f"| {c['window']} | {c['heat_map']} | {_f(c.get('rows_in_window'))} | "
            f"{_f(page['median_ms'])} / {_f(page['p95_ms'])} | {page['queries']} | "
            f"{_f(empty['median_ms'])} | {_f(sel['median_ms'])} |"
        )
    return [*out, ""]


def _hotstate_section(h: dict[str, Any]) -> list[str]:
    out = ["| backend | case | p50 µs | p99 µs | ops/s (c=16) |", "|---|---|---|---|---|"]
    ping = h.get("redis_ping_baseline")
    if isinstance(ping, dict):
        out.append(
            f"| redis | PING baseline | {_f(ping.get('p50_us'))} | {_f(ping.get('p99_us'))} | |"
        )
    for backend in ("memory", "redis"):
        b = h.get(backend)
        if not isinstance(b, dict):
            continue
        for case, fig in b.items():
            if not isinstance(fig, dict):
                continue
            out.append(
                f"| {backend} | {case} | {_f(fig.get('p50_us'))} | {_f(fig.get('p99_us'))} | "
                f"{_f(fig.get('ops_per_s'))} |"
            )
    return [*out, ""]


def _live_section(live: dict[str, Any]) -> list[str]:
    out = [f"{live.get('what', '')}.", ""]
    target = live.get("target")
    if isinstance(target, dict):
        mark = "met" if target.get("met") else "**missed**"
        out += [f"Target: {target.get('what')} <= {target.get('p99_ms_max')} ms: {mark}.", ""]
    summaries = [
        (k, v)
        for k, v in live.items()
        if isinstance(v, dict) and "p50_ms" in v and k != "lag_after_answer"
    ] or [("lag_after_answer", live.get("lag_after_answer", {}))]
    out += ["| latency | n | p50 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|---|"]
    for name, lat in summaries:
        out.append(
            f"| {name} | {_f(lat.get('n'))} | {_f(lat.get('p50_ms'))} | {_f(lat.get('p99_ms'))} "
            f"| {_f(lat.get('max_ms'))} |"
        )
    counts = {
        k: v
        for k, v in live.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("measured",)
    }
    if counts:
        out += ["", ", ".join(f"{k} {_f(v)}" for k, v in counts.items()) + "."]
    return [*out, ""]


def write_summary(
    records: list[dict[str, Any]], facts: dict[str, Any], started: float, quick: bool
) -> None:
    by_name = {r["name"]: r for r in records}
    lines = [
        "# igris benchmarks",
        "",
        f"Generated by `make bench` (bench/run_all.py{' --quick' if quick else ''}) on "
        f"{facts['date']}; the whole run took {round(time.monotonic() - started)} s. "
        "Figures are from this one run; the JSON next to this file has every number.",
        "",
        "## Machine",
        "",
        f"- nproc {facts['nproc']} ({facts.get('cpu_model', '')}), memory {facts.get('memory')}",
        f"- Python {facts['python']}, {facts.get('platform')}",
        f"- PostgreSQL {facts.get('postgresql')}, Redis {facts.get('redis_server')}",
        "- " + ", ".join(f"{k} {v}" for k, v in facts.get("versions", {}).items() if v is not None),
        f"- load average at start {facts.get('load_average')}; bench processes at nice "
        f"{facts.get('bench_niceness')} (other work on the machine yields to them; Redis and "
        "PostgreSQL keep their priority)",
        f"- code under test: {facts.get('code', '')}",
        "",
    ]
    proxy = _load("proxy_overhead", by_name)
    others = _other_targets(
        _load("policy", by_name),
        _load("audit_writer", by_name),
        _load("live_feed", by_name),
        _load("observe_dashboard", by_name),
    )
    if proxy:
        q = proxy.get("quiet_check", {})
        lines += [
            f"- before the proxy run: {q.get('busy_cores_when_started')} cores busy with other "
            f"work (waited {q.get('waited_s')} s for quiet; quiet: {q.get('quiet')})",
            "",
        ]
        lines += ["## Targets", "", "| target | goal | value | |", "|---|---|---|---|"]
        for row in proxy.get("targets", []):
            mark = "met" if row["met"] else "**missed**"
            lines.append(
                f"| {row['target']} | {row['goal']} | {_f(row['value'])} {row['unit']} | {mark} |"
            )
        lines += others
        lines += [
            "",
            "The latency and throughput targets are those of reference/performance.md §6 (measured "
            "there with a 3 µs raw echo upstream and no audit writer draining on the same cores); "
            "the rows on the demo upstream are the production shape asked for here.",
            "",
            "## Proxy overhead: `tools/call echo`, direct vs through igris",
            "",
            f"Method: {proxy.get('method', {}).get('load_generator')}. "
            f"Counts: {json.dumps(proxy.get('method', {}).get('counts'))}. "
            f"{proxy.get('method', {}).get('policy')}. Server logs: "
            f"{proxy.get('method', {}).get('logs')}.",
            "",
        ]
        lines += _proxy_section(proxy)
        lines += ["## Where the time goes", ""]
        lines += _explain(proxy)
    else:
        if others:
            lines += ["## Targets", "", "| target | goal | value | |", "|---|---|---|---|"]
            lines += [*others, ""]
        lines += ["## Proxy overhead", "", "No result (see the steps below).", ""]

    policy = _load("policy", by_name)
    lines += ["## Policy engine (bench/bench_policy.py)", ""]
    if policy:
        lines += _policy_section(policy)
    else:
        lines += [f"Not measured: {by_name.get('policy', {}).get('note', 'no result')}.", ""]

    writer = _load("audit_writer", by_name)
    lines += ["## Audit writer (bench/bench_audit_writer.py)", ""]
    lines += (
        _audit_writer_section(writer)
        if writer
        else [f"Not measured: {by_name.get('audit_writer', {}).get('note', 'no result')}.", ""]
    )

    hot = _load("hotstate", by_name)
    lines += ["## Hot state (bench/bench_hotstate.py)", ""]
    lines += (
        _hotstate_section(hot)
        if hot
        else [f"Not measured: {by_name.get('hotstate', {}).get('note', 'no result')}.", ""]
    )

    memory = _load("memory", by_name)
    lines += ["## Memory (bench/memory.py)", ""]
    lines += (
        _memory_section(memory)
        if memory
        else [f"Not measured: {by_name.get('memory', {}).get('note', 'no result')}.", ""]
    )

    live = _load("live_feed", by_name)
    lines += ["## Live feed (bench/live_feed.py)", ""]
    if live and live.get("measured"):
        lines += _live_section(live)
    else:
        reason = (live or {}).get("reason") or by_name.get("live_feed", {}).get("note", "")
        lines += [reason or "Not measured.", ""]

    observe = _load("observe_dashboard", by_name)
    lines += ["## /observe/ at volume (bench/observe_dashboard.py)", ""]
    lines += (
        _observe_section(observe)
        if observe and observe.get("cases")
        else [f"Not measured: {by_name.get('observe_dashboard', {}).get('note', 'no result')}.", ""]
    )

    lines += ["## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['name']} | {r['status']} | {_f(r.get('seconds'))} | {r.get('note', '')} |"
        )
    lines.append("")
    SUMMARY.write_text("\n".join(lines))


def code_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--",
                "proxy",
                "governance",
                "compliance",
                "igris_project",
            ],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
        return (
            f"git {head} + {len(dirty)} uncommitted changed files under proxy/ governance/ "
            "compliance/ igris_project/"
        )
    except Exception as exc:
        return f"unknown ({exc!r})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small counts, to test the harness.")
    parser.add_argument("--only", default="", help="Comma-separated step names.")
    args = parser.parse_args()
    common.exit_on_sigterm()
    common.raise_priority()  # inherited by every step and every server they start
    started = time.monotonic()
    facts = common.machine_facts()
    facts["code"] = code_state()
    print(
        f"[run_all] {facts['date']}: nproc {facts['nproc']}, Python {facts['python']}", flush=True
    )
    records: list[dict[str, Any]] = []
    try:
        db = common.ensure_database()
        print(f"[run_all] database {db}", flush=True)
    except Exception as exc:
        print(f"[run_all] cannot prepare the bench database: {exc}", flush=True)
        records.append({"name": "database", "status": "failed", "note": str(exc)[:300]})
        write_summary(records, facts, started, args.quick)
        return 1
    wanted = {s for s in args.only.split(",") if s}
    for step in steps(args.quick):
        if wanted and step["name"] not in wanted:
            continue
        records.append(run_step(step))
    common.write_result(
        "run_all",
        {"machine": facts, "steps": records, "seconds": round(time.monotonic() - started)},
    )
    write_summary(records, facts, started, args.quick)
    print(f"[run_all] summary: {SUMMARY.relative_to(common.ROOT)}", flush=True)
    print(SUMMARY.read_text(), flush=True)
    failed = [r for r in records if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
