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
