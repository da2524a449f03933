"""Helpers for tests that serve ASGI apps on real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STARTUP_DEADLINE_SECONDS = 30.0


@contextmanager
def serving(app: Any, *, lifespan: str = "on") -> Iterator[int]:
    """Serve `app` with uvicorn on a free port in a background thread; yield the port."""
    # Binding the socket here and handing it to uvicorn leaves no gap for another process to
    # take the port between picking and binding it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        # The stdlib loop in these threads: uvloop is meant for one loop per process (the real
        # servers run it), and several uvloop loops in threads of one process have crashed.
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan=lifespan,
            timeout_graceful_shutdown=5,
            loop="asyncio",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


async def asgi_call(
    app: Any,
    *,
    path: str,
    method: str = "POST",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through an ASGI app in this process: (status, headers, body).

    The client stays connected until the answer is complete, then disconnects."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers or [],
        "client": client,
        "server": ("testserver", 80),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    done = asyncio.Event()
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    answer_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    return start["status"], answer_headers, b"".join(chunks)


def proxy_app() -> Any:
    """The proxy serving igris' ASGI application in this process: the one started by the
    server a test runs (each event loop has its own, and a test serves from one)."""
    from igris_project.asgi import application

    app: Any = application
    while not hasattr(app, "proxies"):
        app = app.app
    proxies = app.proxies()
    assert len(proxies) == 1, f"expected one serving proxy, found {len(proxies)}"
    return proxies[0]


def tcp_connections(remote_ports: set[int], pid: int | str = "self") -> int:
    """The process's open TCP connections to any of `remote_ports` (a socket some fd of it still
    holds), read from /proc."""
    import os

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        with open(table) as rows:
            for row in rows.read().splitlines()[1:]:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) in remote_ports and fields[9] in inodes:
                    count += 1
    return count
