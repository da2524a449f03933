"""The demo upstream MCP server, over real sockets, with the official 2.x SDK client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette

from igris_project.demo.upstream import (
    ECHO_DESCRIPTION,
    ECHO_DRIFTED_DESCRIPTION,
    README_URI,
    build_demo_app,
)
from tests.support import serving

REPO_ROOT = Path(__file__).resolve().parents[2]
MODERN_VERSION = "2026-07-28"
STARTUP_DEADLINE_SECONDS = 30.0

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
}
JSON_AND_SSE = {"Accept": "application/json, text/event-stream"}


@contextmanager
def running(app: Starlette) -> Iterator[str]:
    """Serve `app` on a free port in a background thread; yield its MCP URL."""
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@asynccontextmanager
async def connect(url: str, mode: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=60.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.fixture
def demo_url() -> Iterator[str]:
    with running(build_demo_app()) as url:
        yield url


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def text_of(result: object) -> str:
    return "".join(block.text for block in result.content if block.type == "text")  # type: ignore[attr-defined]


async def test_it_speaks_the_era_the_client_asks_for(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        if mode == "auto":
            assert client.protocol_version == MODERN_VERSION
        else:
            assert client.protocol_version != MODERN_VERSION
            assert client.protocol_version.startswith("2025-")
        assert client.server_info is not None
        assert client.server_info.name == "igris-demo"


async def test_it_lists_every_tool_with_its_annotations(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

        assert set(tools) == {
            "echo",
            "add",
            "query_records",
            "delete_records",
            "read_file",
            "write_file",
            "slow",
        }
        for name in ("echo", "add", "query_records", "read_file", "slow"):
            assert tools[name].annotations is not None
            assert tools[name].annotations.read_only_hint is True, name
        write = tools["write_file"].annotations
        assert write is not None
        assert (write.read_only_hint, write.destructive_hint, write.idempotent_hint) == (
            False,
            False,
            True,
        )
        delete = tools["delete_records"].annotations
        assert delete is not None
        assert (delete.read_only_hint, delete.destructive_hint) == (False, True)
        assert tools["echo"].description == ECHO_DESCRIPTION


async def test_its_tools_have_typed_input_schemas(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

        add = tools["add"].input_schema
        assert add["required"] == ["a", "b"]
        assert add["properties"]["a"]["type"] == "number"
        query = tools["query_records"].input_schema
        assert query["required"] == ["table"]
        assert query["properties"]["table"]["type"] == "string"
        slow = tools["slow"].input_schema
        assert slow["properties"]["seconds"]["maximum"] == 600
        assert "ctx" not in slow["properties"]


async def test_echo_returns_its_text(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("echo", {"text": "hello, upstream"})

        assert result.is_error is False
        assert text_of(result) == "hello, upstream"


async def test_add_returns_the_sum(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("add", {"a": 2, "b": 3.5})

        assert result.is_error is False
        assert result.structured_content == {"result": 5.5}


async def test_query_records_returns_the_matching_rows_as_structured_content(
    demo_url: str,
    mode: str,
) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool(
            "query_records", {"table": "tickets", "where": {"status": "open"}}
        )

        assert result.is_error is False
        assert result.structured_content is not None
        assert result.structured_content["count"] == 2
        assert [row["id"] for row in result.structured_content["rows"]] == [501, 503]


async def test_query_records_without_a_filter_returns_every_row(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("query_records", {"table": "customers"})

        assert result.structured_content is not None
        assert result.structured_content["count"] == 4


async def test_an_unknown_table_is_a_tool_error_naming_the_tables(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("query_records", {"table": "invoices"})

        assert result.is_error is True
        message = text_of(result)
        assert "invoices" in message
        for table in ("customers", "orders", "tickets"):
            assert table in message


async def test_an_unknown_column_is_a_tool_error_naming_the_columns(
    demo_url: str, mode: str
) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool(
            "query_records", {"table": "orders", "where": {"colour": "red"}}
        )

        assert result.is_error is True
        assert "colour" in text_of(result)
        assert "status" in text_of(result)


async def test_a_written_file_can_be_read_back(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        written = await client.call_tool(
            "write_file", {"path": "/notes/today.md", "content": "Call Grace back."}
        )
        read = await client.call_tool("read_file", {"path": "/notes/today.md"})

        assert written.is_error is False
        assert written.structured_content == {
            "path": "/notes/today.md",
            "size": 16,
            "created": True,
        }
        assert read.is_error is False
        assert text_of(read) == "Call Grace back."


async def test_writing_a_file_again_replaces_it(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        await client.call_tool(
            "write_file", {"path": "/config/app.toml", "content": "debug = true\n"}
        )
        again = await client.call_tool(
            "write_file", {"path": "/config/app.toml", "content": "debug = true\n"}
        )
        read = await client.call_tool("read_file", {"path": "/config/app.toml"})

        assert again.structured_content is not None
        assert again.structured_content["created"] is False
        assert text_of(read) == "debug = true\n"


async def test_a_seeded_file_can_be_read(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("read_file", {"path": "/docs/handbook.md"})

        assert result.is_error is False
        assert text_of(result).startswith("# Support handbook")


async def test_reading_a_missing_file_is_a_tool_error(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("read_file", {"path": "/docs/missing.md"})

        assert result.is_error is True
        assert "/docs/missing.md" in text_of(result)


async def test_a_relative_path_is_a_tool_error(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("write_file", {"path": "notes.md", "content": "x"})

        assert result.is_error is True
        assert "absolute" in text_of(result)


async def test_delete_records_removes_the_matching_rows_and_returns_the_count(
    demo_url: str,
    mode: str,
) -> None:
    async with connect(demo_url, mode) as client:
        deleted = await client.call_tool(
            "delete_records", {"table": "orders", "where": {"customer_id": 2}}
        )
        left = await client.call_tool("query_records", {"table": "orders"})
        again = await client.call_tool(
            "delete_records", {"table": "orders", "where": {"customer_id": 2}}
        )

        assert deleted.is_error is False
        assert deleted.structured_content == {"table": "orders", "deleted": 2}
        assert left.structured_content is not None
        assert [row["id"] for row in left.structured_content["rows"]] == [101, 104]
        assert again.structured_content == {"table": "orders", "deleted": 0}


async def test_delete_records_refuses_an_empty_filter_and_keeps_the_rows(
    demo_url: str, mode: str
) -> None:
    async with connect(demo_url, mode) as client:
        refused = await client.call_tool("delete_records", {"table": "customers", "where": {}})
        left = await client.call_tool("query_records", {"table": "customers"})

        assert refused.is_error is True
        assert "where" in text_of(refused)
        assert left.structured_content is not None
        assert left.structured_content["count"] == 4


async def test_slow_reports_increasing_progress_after_each_step(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        reports: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            reports.append((progress, total, message))

        result = await client.call_tool(
            "slow", {"seconds": 0.2, "steps": 4}, progress_callback=on_progress
        )

        assert result.is_error is False
        assert [progress for progress, _, _ in reports] == [1, 2, 3, 4]
        assert {total for _, total, _ in reports} == {4}
        assert reports[-1][2] == "step 4 of 4"


async def test_slow_refuses_more_than_the_cap(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        result = await client.call_tool("slow", {"seconds": 601})

        assert result.is_error is True
        assert "seconds" in text_of(result)


async def test_it_offers_a_resource_and_a_prompt(demo_url: str, mode: str) -> None:
    async with connect(demo_url, mode) as client:
        resources = (await client.list_resources()).resources
        readme = await client.read_resource(README_URI)
        prompts = (await client.list_prompts()).prompts
        prompt = await client.get_prompt("summarise_table", {"table": "tickets"})

        assert [str(resource.uri) for resource in resources] == [README_URI]
        assert "query_records" in readme.contents[0].text  # type: ignore[union-attr]
        assert [p.name for p in prompts] == ["summarise_table"]
        assert "tickets" in prompt.messages[0].content.text  # type: ignore[union-attr]


async def test_each_app_starts_with_fresh_state(demo_url: str) -> None:
    async with connect(demo_url, "auto") as first:
        await first.call_tool("delete_records", {"table": "customers", "where": {"plan": "team"}})
        changed = await first.call_tool("query_records", {"table": "customers"})

    with running(build_demo_app()) as other_url:
        async with connect(other_url, "auto") as second:
            fresh = await second.call_tool("query_records", {"table": "customers"})

    assert changed.structured_content is not None
    assert changed.structured_content["count"] == 2
    assert fresh.structured_content is not None
    assert fresh.structured_content["count"] == 4


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_drift_changes_only_the_echo_description(mode: str) -> None:
    with running(build_demo_app()) as plain_url, running(build_demo_app(drift=True)) as drift_url:
        async with connect(plain_url, mode) as plain, connect(drift_url, mode) as drifted:
            before = {tool.name: tool for tool in (await plain.list_tools()).tools}
            after = {tool.name: tool for tool in (await drifted.list_tools()).tools}

    assert after["echo"].description == ECHO_DRIFTED_DESCRIPTION
    assert before["echo"].description != after["echo"].description
    for name in set(before) - {"echo"}:
        assert before[name] == after[name], name


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_json_response_app_answers_tool_calls(mode: str) -> None:
    with running(build_demo_app(json_response=True)) as url:
        async with connect(url, mode) as client:
            result = await client.call_tool("add", {"a": 1, "b": 1})

    assert result.structured_content == {"result": 2}


@pytest.mark.parametrize(
    ("json_response", "content_type"),
    [(True, "application/json"), (False, "text/event-stream")],
)
async def test_json_response_chooses_the_legacy_response_body(
    json_response: bool, content_type: str
) -> None:
    with running(build_demo_app(json_response=json_response)) as url:
        async with httpx2.AsyncClient(timeout=30.0) as http:
            response = await http.post(url, json=INITIALIZE, headers=JSON_AND_SSE)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert "igris-demo" in response.text


async def test_it_accepts_any_host_header_so_it_works_behind_a_proxy(demo_url: str) -> None:
    async with httpx2.AsyncClient(timeout=30.0) as http:
        response = await http.post(
            demo_url,
            json=INITIALIZE,
            headers={**JSON_AND_SSE, "Host": "upstream.internal"},
        )

    assert response.status_code == 200
    assert response.headers.get("mcp-session-id")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"run_demo_upstream exited with {process.returncode}:\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("run_demo_upstream did not open its port in time")


@pytest.mark.slow
async def test_the_management_command_serves_the_demo_server() -> None:
    # A subprocess, so the command runs exactly as `make run` starts it. The database URL
    # points at a closed port: the command must serve without ever connecting to it.
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "igris_project.settings",
        "DATABASE_URL": "postgres://nobody:nothing@127.0.0.1:9/nowhere",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_demo_upstream", "--port", str(port), "--drift"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        async with connect(f"http://127.0.0.1:{port}/mcp", "auto") as client:
            echoed = await client.call_tool("echo", {"text": "from manage.py"})
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()

    assert text_of(echoed) == "from manage.py"
    assert tools["echo"].description == ECHO_DRIFTED_DESCRIPTION
