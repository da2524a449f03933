"""The MCP Inspector CLI (npm @modelcontextprotocol/inspector, pinned) against igris."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from tests.compat.conftest import ROOT, drain_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ERAS = ["legacy", "modern"]
CLI_TIMEOUT_S = 90


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error(self) -> dict[str, Any]:
        lines = [line for line in self.stderr.splitlines() if line.startswith('{"error"')]
        assert lines, self.stderr
        return json.loads(lines[-1])["error"]


def inspect(cli: list[str], home, url: str, token: str | None, era: str, *args: str) -> Run:
    argv = [*cli, "--cli", url, "--transport", "http"]
    if token is not None:
        argv += ["--header", f"Authorization: Bearer {token}"]
    argv += ["--protocol-era", era, "--stored-auth-only", "--format", "json", *args]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        env={**os.environ, "HOME": str(home), "NO_COLOR": "1"},
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


def tool_call(name: str, **arguments: Any) -> list[str]:
    return [
        "--method",
        "tools/call",
        "--tool-name",
        name,
        "--tool-args-json",
        json.dumps(arguments),
    ]


VERSIONS = {"legacy": "2025-11-25", "modern": "2026-07-28"}


@pytest.mark.parametrize("era", ERAS)
def test_the_inspector_lists_tools_without_the_denied_ones(
    igris_url, demo_server, policy, acme, acme_key, inspector_cli, home, era
):
    url = f"{igris_url}/proxy/demo/mcp"
    run = inspect(inspector_cli, home, url, acme_key[1], era, "--method", "tools/list")
    assert run.code == 0, run.stderr
    tools = {t["name"]: t for t in run.json["result"]["tools"]}
    assert "delete_records" not in tools
    assert {"echo", "add", "query_records", "read_file", "write_file", "slow"} <= set(tools)
    assert tools["echo"]["inputSchema"]["properties"]["text"]["type"] == "string"
    assert tools["echo"]["annotations"]["readOnlyHint"] is True
    # The era really was the one asked for: igris audits each request with its version.
    lists = [e for e in drain_events(acme.id) if e.get("method") == "tools/list"]
    assert lists and {e["protocol_version"] for e in lists} == {VERSIONS[era]}


@pytest.mark.parametrize("era", ERAS)
def test_the_inspector_calls_echo_and_is_denied_by_policy(
    igris_url, demo_server, policy, acme, acme_key, inspector_cli, home, era
):
    url = f"{igris_url}/proxy/demo/mcp"
    echo = inspect(
        inspector_cli,
        home,
        url,
        acme_key[1],
        era,
        "--method",
        "tools/call",
        "--tool-name",
        "echo",
        "--tool-arg",
        "text=hi",
    )
    assert echo.code == 0, echo.stderr
    assert echo.json["result"]["content"] == [{"type": "text", "text": "hi"}]
    assert not echo.json["result"].get("isError")

    # read_file is listed, but the policy denies this path: igris answers with an isError tool
    # result (not a protocol error), which the CLI reports with exit code 5.
    denied = inspect(
        inspector_cli, home, url, acme_key[1], era, *tool_call("read_file", path="/config/app.toml")
    )
    assert denied.code == 5, (denied.stdout, denied.stderr)
    assert denied.json["result"]["isError"] is True
    text = denied.json["result"]["content"][0]["text"]
    assert "no-config" in text and "off limits" in text
    assert denied.json["result"]["_meta"]["igris/decision"]["rule"] == "no-config"

    allowed = inspect(
        inspector_cli,
        home,
        url,
        acme_key[1],
        era,
        *tool_call("read_file", path="/docs/handbook.md"),
    )
    assert allowed.code == 0, allowed.stderr
    assert "Support handbook" in allowed.json["result"]["content"][0]["text"]

    # delete_records is hidden from tools/list, and the CLI looks a tool up before calling it:
    # it stops with "tool not found" (also exit 5) and the call never reaches igris.
    hidden = inspect(
        inspector_cli,
        home,
        url,
        acme_key[1],
        era,
        *tool_call("delete_records", table="customers", where={"id": 1}),
    )
    assert hidden.code == 5, (hidden.stdout, hidden.stderr)
    assert hidden.error["code"] == "tool_not_found"

    calls = [e for e in drain_events(acme.id) if e["type"] == "tool_call"]
    assert [(c["tool"], c["decision"], c["rule_id"]) for c in calls] == [
        ("echo", "allow", "allow-rest"),
        ("read_file", "deny", "no-config"),
        ("read_file", "allow", "allow-rest"),
    ]
    assert {c["protocol_version"] for c in calls} == {VERSIONS[era]}
    assert calls[0]["arguments"] == {"text": "hi"}
    if era == "modern":
        # Modern requests name their client in _meta on every call.
        assert {c["client_info"]["name"] for c in calls} == {"inspector-cli"}


@pytest.mark.parametrize("era", ERAS)
def test_the_inspector_without_a_key_gets_auth_required(
    igris_url, demo_server, inspector_cli, home, era
):
    run = inspect(
        inspector_cli, home, f"{igris_url}/proxy/demo/mcp", None, era, "--method", "tools/list"
    )
    assert run.code == 3, (run.stdout, run.stderr)
