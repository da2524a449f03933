"""A client built with the official Python SDK **1.x** (legacy era only), run as a script.

1.x and 2.x cannot share one virtualenv, so the compat tests run this file with
`.venv-mcp1/bin/python` (see `make compat-deps`). It must not import anything from igris.

    .venv-mcp1/bin/python tests/compat/mcp1_client.py URL --token T [--api new|deprecated]

It connects over Streamable HTTP with a bearer token, lists tools, calls `echo`, `add`, a tool
the policy denies, `read_file` on a path the policy denies, and `slow` with a progress callback,
lists resources, pings, and prints exactly one JSON object on stdout. On an unexpected failure
it still prints one JSON object, with an "error" key, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client, streamablehttp_client

TIMEOUT_S = 30.0


def _tool_result(result: Any) -> dict[str, Any]:
    return {
        "isError": bool(result.isError),
        "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
        "structuredContent": result.structuredContent,
        "meta": result.meta,
    }


@asynccontextmanager
async def _transport(url: str, token: str, api: str) -> AsyncIterator[tuple[Any, Any, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    if api == "deprecated":
        # The 1.x-only helper that takes headers directly (removed in 2.x).
        async with streamablehttp_client(
            url, headers=headers, timeout=TIMEOUT_S, sse_read_timeout=60
        ) as streams:
            yield streams
        return
    async with (
        httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(TIMEOUT_S, read=60.0), follow_redirects=True
        ) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


async def run(url: str, token: str, api: str, denied_tool: str) -> dict[str, Any]:
    out: dict[str, Any] = {"sdk_version": version("mcp"), "api": api}
    progress: list[dict[str, Any]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": value, "total": total, "message": message})

    async with (
        _transport(url, token, api) as (read, write, get_session_id),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        out["protocol_version"] = init.protocolVersion
        out["server_info"] = {"name": init.serverInfo.name, "version": init.serverInfo.version}
        out["session_id"] = get_session_id()
        tools = await session.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        out["echo"] = _tool_result(await session.call_tool("echo", {"text": "hi from mcp 1.x"}))
        out["add"] = _tool_result(await session.call_tool("add", {"a": 2, "b": 3}))
        out["denied"] = _tool_result(
            await session.call_tool(denied_tool, {"table": "customers", "where": {"id": 1}})
        )
        out["denied_by_argument"] = _tool_result(
            await session.call_tool("read_file", {"path": "/config/app.toml"})
        )
        out["slow"] = _tool_result(
            await session.call_tool(
                "slow", {"seconds": 0.4, "steps": 4}, progress_callback=on_progress
            )
        )
        out["progress"] = progress
        await session.send_ping()
        out["ping"] = True
        resources = await session.list_resources()
        out["resources"] = sorted(str(r.uri) for r in resources.resources)
        # After all calls: the denied tool's rows must still be there upstream.
        rows = await session.call_tool("query_records", {"table": "customers"})
        out["query_records"] = _tool_result(rows)
    return out


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a failure, looking inside exception groups and causes."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, httpx.HTTPStatusError):
            return current.response.status_code
        todo.extend(getattr(current, "exceptions", ()))
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--api", choices=["new", "deprecated"], default="new")
    parser.add_argument("--denied-tool", default="delete_records")
    args = parser.parse_args()
    try:
        result = asyncio.run(run(args.url, args.token, args.api, args.denied_tool))
    except BaseException as exc:  # one JSON object on stdout whatever happens
        detail = "".join(traceback.format_exception(exc))
        error = {"error": repr(exc), "http_status": _http_status(exc), "traceback": detail}
        print(json.dumps(error))
        return 1
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
