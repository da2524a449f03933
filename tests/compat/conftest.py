"""Clients and servers other than the 2.x Python SDK, against igris on real sockets.

The Python SDK 1.x lives in its own virtualenv (`.venv-mcp1`) and the MCP Inspector CLI in
`tests/compat/node_modules`; `make compat-deps` (a prerequisite of `make test`) installs both
from pinned files. The fixtures below create them when missing and skip only when that fails;
with CI=true a missing client fails the run instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.proxy.conftest import *  # noqa: F403  (igris_url, upstream_url, demo_server, …)

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "tests" / "compat"
MCP1_VENV = ROOT / ".venv-mcp1"
MCP1_PYTHON = MCP1_VENV / "bin" / "python"
MCP1_REQUIREMENTS = COMPAT / "requirements-mcp1.txt"
INSPECTOR_BIN = COMPAT / "node_modules" / ".bin" / "mcp-inspector"
INSTALL_TIMEOUT_S = 300
SERVER_START_TIMEOUT_S = 30

# The policy the compat tests publish: `delete_*` tools are denied (and so hidden from lists),
# `read_file` is denied for /config/* only (so it stays listed and a call to it is refused with
# an isError result), everything else is allowed.
RULES = [
    {
        "id": "no-delete",
        "action": "deny",
        "message": "deleting records needs a human",
        "match": {"tools": ["delete_*"]},
    },
    {
        "id": "no-config",
        "action": "deny",
        "message": "configuration files are off limits",
        "match": {
            "tools": ["read_file"],
            "arguments": [{"path": "path", "op": "glob", "value": "/config/*"}],
        },
    },
    {"id": "allow-rest", "action": "allow", "match": {"tools": ["*"]}},
]


def _run_install(commands: list[list[str]]) -> str | None:
    """Run install commands from the repo root; the first failure's output, or None."""
    for command in commands:
        try:
            done = subprocess.run(
                command,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command)}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}"
    return None


def _unavailable(reason: str) -> NoReturn:
    """Skip here; in CI (CI=true) a missing client fails the run instead of hiding it."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: a compatibility client must be present)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mcp1_python() -> Path:
    """`.venv-mcp1/bin/python` with the pinned `mcp==1.30.0`; created like `make compat-deps`."""
    if not MCP1_PYTHON.exists():
        uv = shutil.which("uv")
        if uv is None:
            _unavailable(".venv-mcp1 is missing and uv is not on PATH to create it")
        failure = _run_install(
            [
                [uv, "venv", "--python", "3.11", str(MCP1_VENV)],
                [uv, "pip", "install", "--python", str(MCP1_PYTHON), "-r", str(MCP1_REQUIREMENTS)],
            ]
        )
        if failure is not None:
            _unavailable(f".venv-mcp1 is missing and could not be created ({failure})")
    probe = subprocess.run(
        [str(MCP1_PYTHON), "-c", "import importlib.metadata as m; print(m.version('mcp'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, f".venv-mcp1 is broken: {probe.stderr}"
    assert probe.stdout.strip() == "1.30.0", f".venv-mcp1 has mcp {probe.stdout.strip()}"
    return MCP1_PYTHON


@pytest.fixture(scope="session")
def inspector_cli() -> list[str]:
    """The argv prefix that runs the pinned MCP Inspector launcher with node."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed, so the MCP Inspector CLI cannot run")
    if not INSPECTOR_BIN.exists():
        npm = shutil.which("npm")
        if npm is None:
            _unavailable("tests/compat/node_modules is missing and npm is not on PATH")
        failure = _run_install([[npm, "ci", "--prefix", str(COMPAT), "--no-audit", "--no-fund"]])
        if failure is not None or not INSPECTOR_BIN.exists():
            _unavailable(f"the MCP Inspector could not be installed ({failure})")
    return [node, str(INSPECTOR_BIN)]


def publish(org: Any, actor: Any, rules: list[dict[str, Any]], posture: str = "deny") -> Any:
    from governance.services.organizations import organization_update
    from governance.services.policies import policy_draft_update, policy_publish

    organization_update(org=org, actor=actor, default_posture=posture)
    policy_draft_update(org=org, actor=actor, rules=rules)
    return policy_publish(org=org, actor=actor)


@pytest.fixture
def policy(acme, alice):
    return publish(acme, alice, RULES)


def drain_events(org_id: Any) -> list[dict[str, Any]]:
    """The audit events the proxy made durable for this org (the Redis stream here), with the
    call's fields (method, tool, decision, protocol_version, …) lifted to the top level."""
    from django.conf import settings

    from governance.events import AUDIT_STREAM
    from governance.runtime.hotstate.redis import RedisHotState

    async def read() -> list[tuple[str, dict[str, str]]]:
        hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
        try:
            return await hs.stream_range(AUDIT_STREAM, "-", "+")
        finally:
            await hs.close()

    events = [json.loads(fields["event"]) for _, fields in asyncio.run(read())]
    # The call's columns travel in the envelope's `data`; flatten them for the assertions.
    return [{**(e.get("data") or {}), **e} for e in events if e["org_id"] == str(org_id)]


@dataclass
class Mcp1Upstream:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def _lines(self, key: str) -> list[dict[str, Any]]:
        prefix = f'{{"{key}"'
        return [
            json.loads(line)[key]
            for line in self.log.read_text().splitlines()
            if line.startswith(prefix)
        ]

    def wire(self) -> list[dict[str, Any]]:
        """What the 1.x server saw: one dict per HTTP exchange (see mcp1_server.wire_log)."""
        return self._lines("wire")

    def open_exchanges(self, settle_s: float = 5.0) -> list[dict[str, Any]]:
        """Exchanges (e.g. GET streams) still open after waiting up to `settle_s` seconds."""
        deadline = time.monotonic() + settle_s
        while True:
            ended = {end["n"] for end in self._lines("wire_end")}
            still = [w for w in self.wire() if w["n"] not in ended]
            if not still or time.monotonic() > deadline:
                return still
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def mcp1_upstream(mcp1_python, tmp_path) -> Iterator[Mcp1Upstream]:
    """A FastMCP 1.x server (stateful legacy) in its own process on a free port."""
    out, log = tmp_path / "mcp1_server.out", tmp_path / "mcp1_server.log"
    with out.open("wb") as stdout, log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(mcp1_python), str(COMPAT / "mcp1_server.py"), "--port", "0"],
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not out.read_text().endswith("\n"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the 1.x server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        port = json.loads(out.read_text().splitlines()[0])["port"]
        yield Mcp1Upstream(url=f"http://127.0.0.1:{port}/mcp", process=process, log=log)
    finally:
        stop(process)


@pytest.fixture
def mcp1_server(acme, alice, mcp1_upstream):
    """The 1.x upstream registered as acme's McpServer `legacy1`."""
    from governance.services.servers import server_create

    return server_create(
        org=acme,
        actor=alice,
        name="Legacy 1.x tools",
        slug="legacy1",
        upstream_url=mcp1_upstream.url,
    )
