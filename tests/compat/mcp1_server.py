"""An upstream MCP server built with the official Python SDK **1.x** `FastMCP`, run as a script.

1.x speaks only the legacy era (newest version 2025-11-25, no `server/discover`) and is
stateful here: `initialize` mints an `Mcp-Session-Id`, and every other request without one
gets 400 "Missing session ID". The compat tests start it with `.venv-mcp1/bin/python`; it must
not import anything from igris.

    .venv-mcp1/bin/python tests/compat/mcp1_server.py [--port 0]

It binds 127.0.0.1 (port 0 picks a free one), starts listening, and prints one line of JSON,
`{"port": N}`, on stdout; connections made from then on wait in the backlog until the server
is up. Every HTTP exchange is logged to stderr as JSON lines (`"wire"`: method, JSON-RPC method,
tool name, MCP headers and the answer's status; `"wire_end"` when it is over), so a test can
show what went over the wire and which streams are still open.
It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import sys
import time
from typing import Any

import uvicorn
from mcp.server.fastmcp import Context, FastMCP

MCP_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id", "accept")


def build_server() -> FastMCP:
    # Defaults kept on purpose: stateful sessions, SSE answers, and the SDK's DNS-rebinding
    # guard for 127.0.0.1 (the proxy must send a Host the guard accepts).
    mcp = FastMCP("igris-compat-mcp1", stateless_http=False, json_response=False)
    rows = {"customers": [{"id": 1}, {"id": 2}, {"id": 3}]}

    @mcp.tool(description="Return the given text unchanged.")
    def echo(text: str) -> str:
        return text

    @mcp.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @mcp.tool(description="Delete rows whose columns equal every value in `where`.")
    def delete_records(table: str, where: dict[str, Any]) -> dict[str, Any]:
        before = len(rows.get(table, []))
        rows[table] = [
            r for r in rows.get(table, []) if any(r.get(k) != v for k, v in where.items())
        ]
        return {"table": table, "deleted": before - len(rows[table])}

    @mcp.tool(description="Count the rows of a table.")
    def count_records(table: str) -> dict[str, Any]:
        return {"table": table, "count": len(rows.get(table, []))}

    @mcp.tool(description="Wait `seconds` in `steps` steps, reporting progress after each.")
    async def slow(ctx: Context, seconds: float = 0.4, steps: int = 4) -> str:
        for step in range(1, steps + 1):
            await asyncio.sleep(seconds / steps)
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
        return f"Waited {seconds:g} seconds in {steps} steps."

    return mcp


def wire_log(app: Any) -> Any:
    """ASGI middleware: JSON lines on stderr, `wire` when an answer starts, `wire_end` when the
    exchange is over (so a test can tell a stream still open from one closed)."""
    numbers = itertools.count(1)

    async def logged(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        started = time.monotonic()
        record: dict[str, Any] = {
            "n": next(numbers),
            "http": scope["method"],
            "path": scope["path"],
            "headers": {k: headers[k] for k in MCP_HEADERS if k in headers},
            "host": headers.get("host"),
        }
        body = bytearray()

        async def tap_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def tap_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    record["rpc"] = parsed.get("method") or ("response" if "id" in parsed else None)
                    params = parsed.get("params")
                    if isinstance(params, dict) and isinstance(params.get("name"), str):
                        record["name"] = params["name"]
                print(json.dumps({"wire": record}), file=sys.stderr, flush=True)
            await send(message)

        try:
            await app(scope, tap_receive, tap_send)
        finally:
            ms = round((time.monotonic() - started) * 1000, 1)
            print(
                json.dumps({"wire_end": {"n": record["n"], "ms": ms}}), file=sys.stderr, flush=True
            )

    return logged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    app = wire_log(build_server().streamable_http_app())
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
