"""Latency of the proxy's step 5 (decide) on compiled policies of 10, 1,000 and 10,000 rules.

DESIGN.md section 3 puts `decide` on every proxied call, "pure, in memory, microseconds"; the
target is p99 <= 50 us at 10,000 rules. Each size is a seeded, realistic mix (exact tool names,
prefix/suffix/infix globs, server, method, identity, argument and time-window rules) queried
with calls that hit and miss. The direct baseline, in the same run, is the naive reading of the
semantics on the same compiled rules: try every rule in order until one matches (no index).

Also measured: building a snapshot from the stored JSON (validate + compile), filtering a
50-tool tools/list answer, and the worst case of the regex conditions the guard accepts on
4 KiB adversarial values (the cost an agent can force per condition, see regex_guard).

    .venv/bin/python bench/bench_policy.py [-n 20000] [--seed 7]

Writes bench/results/policy.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governance.policy import CallContext, PolicySnapshot  # noqa: E402
from governance.policy.engine import CompiledPolicy, Decision  # noqa: E402
from governance.policy.regex_guard import MAX_REGEX_SUBJECT, check_regex  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "policy.json"
SIZES = (10, 1_000, 10_000)
TARGET_P99_US = 50.0
VERBS = ("read", "write", "delete", "list", "get", "create", "update", "search", "run", "drop")
SERVERS = (*(f"srv-{i:02d}" for i in range(20)), "prod-db", "prod-web", "dev-db")
ROLES = ("owner", "admin", "developer", "ciso", "auditor")
TAGS = ("ci", "prod", "batch", "staging", "oncall")
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")
REGEXES = (r"^/etc/", r"\.pem$", r"(?i)drop\s+table", r"AKIA[0-9A-Z]{16}", r"[;&|`]")


def tool_names(count: int) -> list[str]:
    return [f"{VERBS[i % len(VERBS)]}_item{i}" for i in range(count)]


def make_rule(rng: random.Random, i: int, tools: list[str], keys: list[str]) -> dict[str, Any]:
    match: dict[str, Any] = {}
    kind = rng.random()
    if kind < 0.45:
        match["tools"] = rng.sample(tools, rng.randint(1, 3))
    elif kind < 0.60:
        verb = rng.choice(VERBS)
        match["tools"] = [
            f"{verb}_*" if rng.random() < 0.5 else f"{verb}_item{rng.randint(1, 99)}*"
        ]
    elif kind < 0.68:
        match["tools"] = [f"*_item{rng.randint(0, len(tools))}"]
    elif kind < 0.70:
        match["tools"] = [f"*item{rng.randint(0, 99)}*"]
    elif kind < 0.80:
        field = rng.choice(("roles", "keys", "key_tags"))
        match[field] = rng.sample({"roles": ROLES, "keys": keys, "key_tags": TAGS}[field], 1)
        match["tools"] = [rng.choice(tools)]
    elif kind < 0.90:
        match["tools"] = [rng.choice(tools) if rng.random() < 0.7 else f"{rng.choice(VERBS)}_*"]
        match["arguments"] = [argument(rng)]
    elif kind < 0.95:
        match["tools"] = [rng.choice(tools)]
        start = rng.randint(0, 23)
        match["time"] = {
            "days": rng.sample(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), 5),
            "start": f"{start:02d}:00",
            "end": f"{(start + rng.randint(1, 12)) % 24:02d}:30",
            "tz": rng.choice(ZONES),
        }
    else:
        match["servers"] = [rng.choice(("prod-*", "*-db", rng.choice(SERVERS)))]
        match["methods"] = ["resources/read"]
    if rng.random() < 0.5:
        match["servers"] = [rng.choice(SERVERS)]
    if rng.random() < 0.7 and "methods" not in match:
        match["methods"] = ["tools/call"]
    action = rng.choices(("allow", "deny", "alert"), (6, 3, 1))[0]
    rule: dict[str, Any] = {"id": f"r{i}", "action": action, "match": match}
    if action != "deny" and rng.random() < 0.1:
        rule["rate_limit"] = {"limit": 60, "window_s": 60, "per": "key"}
    return rule


def argument(rng: random.Random) -> dict[str, Any]:
    op = rng.choice(("glob", "eq", "in", "lt", "regex", "contains", "exists"))
    value: Any = {
        "glob": "/etc/*",
        "eq": True,
        "in": ["a", "b", "c"],
        "lt": 100,
        "regex": rng.choice(REGEXES),
        "contains": "secret",
        "exists": True,
    }[op]
    path = {"eq": "options.recursive", "lt": "count", "in": "mode"}.get(op, "path")
    return {"path": path, "op": op, "value": value}


def make_calls(rng: random.Random, n: int, tools: list[str], keys: list[str]) -> list[CallContext]:
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    calls = []
    for _ in range(n):
        method = rng.choices(("tools/call", "tools/list", "resources/read"), (90, 5, 5))[0]
        name: str | None = rng.choice(tools) if rng.random() < 0.8 else f"unknown_{rng.random()}"
        if method == "tools/list":
            name = None
        elif method == "resources/read":
            name = f"file:///srv/{rng.randint(0, 99)}.txt"
        arguments = {
            "path": rng.choice(("/etc/passwd", "/tmp/x", "/home/a/.ssh/id.pem", "a" * 200)),
            "options": {"recursive": rng.random() < 0.5},
            "count": rng.randint(0, 200),
            "mode": rng.choice("abcxyz"),
        }
        calls.append(
            CallContext(
                org_id="acme",
                server_slug=rng.choice(SERVERS),
                method=method,
                name=name,
                arguments=arguments,
                key_id=rng.choice(keys),
                key_tags=frozenset(rng.sample(TAGS, rng.randint(0, 2))),
                role=rng.choice(ROLES),
                now=monday + timedelta(minutes=rng.randint(0, 7 * 24 * 60)),
            )
        )
    return calls


def naive_decide(policy: CompiledPolicy, call: CallContext) -> Decision:
    for compiled in policy.rules:
        if compiled.rule.enabled and compiled.matches(call):
            return compiled.decision
    return policy.default


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1000

    return {
        "n": len(ordered),
        "p50_us": round(pct(0.50), 2),
        "p99_us": round(pct(0.99), 2),
        "mean_us": round(statistics.fmean(ordered) / 1000, 2),
        "max_us": round(ordered[-1] / 1000, 1),
    }


def measure(fn: Any, calls: list[CallContext]) -> dict[str, Any]:
    """Wall-clock latency, and CPU time of this thread (immune to other processes on a busy
    machine; its own clock read adds about a microsecond)."""
    for call in calls[:500]:  # warm-up
        fn(call)
    result: dict[str, Any] = {}
    for label, clock in (("wall", time.perf_counter_ns), ("cpu", time.thread_time_ns)):
        gc.collect()
        samples = []
        for call in calls:
            start = clock()
            fn(call)
            samples.append(clock() - start)
        result[label] = summary(samples)
    return result


def bench_size(size: int, n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed + size)
    tools = tool_names(max(50, size // 2))
    keys = [f"key-{i}" for i in range(50)]
    documents = [make_rule(rng, i, tools, keys) for i in range(size)]
    start = time.perf_counter()
    snapshot = PolicySnapshot.from_documents(
        org_id="acme", version=1, posture="deny", documents=documents
    )
    build_ms = (time.perf_counter() - start) * 1000
    calls = make_calls(rng, n, tools, keys)
    policy = snapshot.compiled

    decisions = [snapshot.decide(call) for call in calls]
    baseline_calls = calls[: max(200, n // (1 + size // 100))]
    mismatches = sum(naive_decide(policy, c) != snapshot.decide(c) for c in baseline_calls)
    assert mismatches == 0, f"index disagrees with the naive loop on {mismatches} calls"

    listing = calls[0]
    tool_list = [{"name": name} for name in rng.sample(tools, 50)]
    filter_samples = []
    for _ in range(200):
        t0 = time.perf_counter_ns()
        snapshot.filter_tools(listing, tool_list)
        filter_samples.append(time.perf_counter_ns() - t0)

    return {
        "rules": size,
        "build_ms": round(build_ms, 1),
        "matched_by_a_rule": round(sum(d.rule_id is not None for d in decisions) / n, 3),
        "decide": measure(snapshot.decide, calls),
        "naive_baseline": measure(lambda c: naive_decide(policy, c), baseline_calls),
        "filter_tools_50_wall": summary(filter_samples),
    }


def regex_worst_case() -> dict[str, float]:
    """Slowest search per accepted pattern over adversarial subjects at the cap, in ms."""
    subjects = [c * MAX_REGEX_SUBJECT for c in ("a", "1", " ", "/")]
    subjects += [pair * (MAX_REGEX_SUBJECT // 2) for pair in ("a.", "ab", "a@", " ,")]
    patterns = (*REGEXES, r"\w+@\w+\.\w+", r"^\w+(\.\w+)*$", r"\s*,\s*", r"(a|b)+c", r"(ab|a)*c")
    worst = {}
    for pattern in patterns:
        compiled: re.Pattern[str] = check_regex(pattern)
        slowest = 0.0
        for subject in subjects:
            t0 = time.perf_counter()
            compiled.search(subject, 0, MAX_REGEX_SUBJECT)
            slowest = max(slowest, time.perf_counter() - t0)
        worst[pattern] = round(slowest * 1000, 2)
    return worst


def main(n: int, seed: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "what": "policy decide() latency by rule count; baseline = unindexed first-match loop",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "target_p99_us_at_10000": TARGET_P99_US,
        "sizes": [bench_size(size, n, seed) for size in SIZES],
        "regex_worst_case_ms_at_cap": regex_worst_case(),
    }
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    at_10k = report["sizes"][-1]["decide"]
    report["target_met"] = {
        "wall": at_10k["wall"]["p99_us"] <= TARGET_P99_US,
        "cpu": at_10k["cpu"]["p99_us"] <= TARGET_P99_US,
    }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="calls per size")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    result = main(args.n, args.seed)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
