"""The official Python SDK 1.x (legacy era only) against igris, both as client and as upstream."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest

from tests.compat.conftest import COMPAT, ROOT, drain_events
from tests.proxy.conftest import mcp_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLIENT_TIMEOUT_S = 90


def run_mcp1_client(python, url: str, token: str, api: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), str(COMPAT / "mcp1_client.py"), url, "--token", token, "--api", api],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"stdout={done.stdout}\nstderr={done.stderr[-4000:]}"
    return json.loads(done.stdout)


@pytest.mark.parametrize("api", ["new", "deprecated"])
def test_a_1x_client_lists_calls_is_denied_and_gets_progress(
    igris_url, demo_server, policy, acme, acme_key, mcp1_python, api
):
    out = run_mcp1_client(mcp1_python, f"{igris_url}/proxy/demo/mcp", acme_key[1], api)

    assert out["sdk_version"] == "1.30.0"
    assert out["protocol_version"] == "2025-11-25"
    assert out["server_info"]["name"] == "igris-demo"
    # igris mints its own session id (the upstream's never reaches the client).
    assert out["session_id"].startswith("igs_")
    assert "delete_records" not in out["tools"]
    assert {"echo", "add", "slow", "query_records", "read_file"} <= set(out["tools"])

    assert out["echo"]["isError"] is False
    assert out["echo"]["text"] == ["hi from mcp 1.x"]
    assert out["add"]["isError"] is False and "5" in out["add"]["text"][0]

    denied = out["denied"]
    assert denied["isError"] is True
    assert "no-delete" in denied["text"][0] and "needs a human" in denied["text"][0]
    assert denied["meta"]["igris/decision"]["action"] == "deny"
    assert denied["meta"]["igris/decision"]["rule"] == "no-delete"

    by_argument = out["denied_by_argument"]
    assert by_argument["isError"] is True
    assert "no-config" in by_argument["text"][0]
    assert by_argument["meta"]["igris/decision"]["rule"] == "no-config"

    assert out["slow"]["isError"] is False
    assert [p["progress"] for p in out["progress"]] == [1, 2, 3, 4]
    assert all(p["total"] == 4 for p in out["progress"])
    assert out["progress"][-1]["message"] == "step 4 of 4"

    assert out["ping"] is True
    assert out["resources"] == ["demo://readme"]
    # The denied delete never reached the upstream.
    assert out["query_records"]["structuredContent"]["count"] == 4

    events = drain_events(acme.id)
    [init] = [e for e in events if e.get("method") == "initialize"]
    # A legacy client names itself once, in initialize (later calls carry no clientInfo).
    assert init["client_info"]["name"] == "mcp"
    assert init["session_id"] == out["session_id"]
    calls = [e for e in events if e["type"] == "tool_call"]
    assert [(c["tool"], c["decision"]) for c in calls] == [
        ("echo", "allow"),
        ("add", "allow"),
        ("delete_records", "deny"),
        ("read_file", "deny"),
        ("slow", "allow"),
        ("query_records", "allow"),
    ]
    assert {c["protocol_version"] for c in calls} == {"2025-11-25"}
    assert {c["session_id"] for c in calls} == {out["session_id"]}


def test_the_initialize_audit_event_records_the_negotiated_version(
    igris_url, demo_server, policy, acme, acme_key, mcp1_python
):
    out = run_mcp1_client(mcp1_python, f"{igris_url}/proxy/demo/mcp", acme_key[1], "new")
    assert out["protocol_version"] == "2025-11-25"
    [init] = [e for e in drain_events(acme.id) if e.get("method") == "initialize"]
    assert init["protocol_version"] == "2025-11-25"


def test_a_1x_client_without_a_key_is_refused(igris_url, demo_server, mcp1_python):
    done = subprocess.run(
        [
            str(mcp1_python),
            str(COMPAT / "mcp1_client.py"),
            f"{igris_url}/proxy/demo/mcp",
            "--token",
            "ig_nope",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["http_status"] == 401, out["traceback"]


# --- a 1.x FastMCP upstream behind igris -------------------------------------------------------


def _discover(url: str, token: str) -> httpx.Response:
    return httpx.post(
        url,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "server/discover",
        },
        content=json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "server/discover",
                "params": {
                    "_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {},
                    }
                },
            }
        ),
        timeout=30,
    )


def test_the_modern_probe_to_a_1x_upstream_is_a_non_modern_error(
    igris_url, mcp1_server, mcp1_upstream, acme_key
):
    """What igris answers the 2.x client's `server/discover` probe when the upstream is 1.x."""
    answer = _discover(f"{igris_url}/proxy/legacy1/mcp", acme_key[1])
    # The 1.x server's own answer, relayed: legacy evidence for the client's era classifier
    # (not a modern -32020/-32022/-32601, not an empty 2xx, not 401/403).
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == -32600
    assert "Missing session ID" in error["message"]
    # The 1.x session id minted for that stray request never reaches the client.
    assert "mcp-session-id" not in answer.headers
    [probe] = [w for w in mcp1_upstream.wire() if w["rpc"] == "server/discover"]
    assert probe["status"] == 400
    assert probe["headers"]["mcp-protocol-version"] == "2026-07-28"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_2x_client_reaches_a_1x_upstream_through_igris(
    igris_url, mcp1_server, mcp1_upstream, policy, acme_key, mode
):
    progress: list[float] = []

    async def on_progress(value, total, message):
        progress.append(value)

    async with mcp_client(f"{igris_url}/proxy/legacy1/mcp", acme_key[1], mode=mode) as client:
        # auto: the probe failed with a non-modern error, so the client fell back to initialize.
        assert client.protocol_version == "2025-11-25"
        assert client.server_info.name == "igris-compat-mcp1"
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"echo", "add", "count_records", "slow"}
        echo = await client.call_tool("echo", {"text": "2.x via igris to 1.x"})
        assert not echo.is_error and echo.content[0].text == "2.x via igris to 1.x"
        denied = await client.call_tool("delete_records", {"table": "customers", "where": {}})
        assert denied.is_error and "no-delete" in denied.content[0].text
        slow = await client.call_tool(
            "slow", {"seconds": 0.4, "steps": 4}, progress_callback=on_progress
        )
        assert not slow.is_error
        count = await client.call_tool("count_records", {"table": "customers"})
        assert count.structured_content == {"table": "customers", "count": 3}
    assert progress == [1, 2, 3, 4]

    wire = mcp1_upstream.wire()
    rpcs = [w["rpc"] for w in wire if w["http"] == "POST"]
    if mode == "auto":
        assert rpcs[0] == "server/discover" and wire[0]["status"] == 400
        rpcs = rpcs[1:]
    assert rpcs[:2] == ["initialize", "notifications/initialized"]
    called = [w["name"] for w in wire if w.get("rpc") == "tools/call"]
    assert called == ["echo", "slow", "count_records"]  # the denied delete never got there
    # Every request after initialize carried the upstream's own session id, not igris' one.
    session_ids = {w["headers"].get("mcp-session-id") for w in wire if w.get("rpc") == "tools/call"}
    assert len(session_ids) == 1 and not next(iter(session_ids)).startswith("igs_")
    # The Host the proxy sends passes the 1.x DNS-rebinding guard (no 421 anywhere).
    assert all(w["status"] != 421 for w in wire)
    # The client's DELETE reached the upstream, and no upstream stream outlives the client.
    assert [w["status"] for w in wire if w["http"] == "DELETE"] == [200]
    assert mcp1_upstream.open_exchanges() == []
