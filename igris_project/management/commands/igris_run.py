"""`make run`: migrate, start the demo upstream, seed the demo organisation, serve igris.

One command, no outside services: SQLite in var/, in-process hot state, Celery eager, the audit
writer as a background task of the web process. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from governance.public_url import default_public_url, served_base_url


def upstream_log_path() -> Path:
    """Where the demo upstream's output goes: its access log has a line per call, which would
    bury the banner and igris's own log in the terminal."""
    return Path(settings.VAR_DIR) / "demo-upstream.log"


def _wait_for_port(host: str, port: int, *, timeout_s: float, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CommandError(
                f"the demo upstream exited early with code {proc.returncode} "
                f"(its output is in {upstream_log_path()})"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CommandError(f"the demo upstream did not start listening on {host}:{port}")


def adopt_public_url(host: str, port: int) -> str:
    """Default IGRIS_PUBLIC_URL to the address this command serves, unless the operator set it
    (or the bind is a wildcard, where each request's host is the right answer); return the base
    URL to print. The pages, the proxy's 401 challenge and the banner then name the same port."""
    if not settings.IGRIS_PUBLIC_URL:
        settings.IGRIS_PUBLIC_URL = default_public_url(host, port) or ""
    return settings.IGRIS_PUBLIC_URL or served_base_url(host, port)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture: the command owns SIGINT/SIGTERM, because
    uvicorn re-raises the signal after shutdown, which would end this process before it stops
    the demo upstream."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Command(BaseCommand):
    help = "Run igris on its embedded default with a demo organisation and MCP server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3100")))
        parser.add_argument(
            "--upstream-port",
            type=int,
            default=int(os.environ.get("IGRIS_DEMO_UPSTREAM_PORT", "3199")),
        )
        parser.add_argument(
            "--no-demo", action="store_true", help="Skip the demo upstream and seed."
        )
        parser.add_argument("--workers", type=int, default=1)

    def handle(self, *args: Any, **opts: Any) -> None:
        host, port = opts["host"], opts["port"]
        base_url = adopt_public_url(host, port)
        call_command("migrate", interactive=False, verbosity=0)
        upstream: subprocess.Popen[Any] | None = None
        try:
            if not opts["no_demo"]:
                upstream_port = opts["upstream_port"]
                upstream_log = upstream_log_path().open("wb")
                upstream = subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(settings.BASE_DIR) / "manage.py"),
                        "run_demo_upstream",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(upstream_port),
                    ],
                    stdout=upstream_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                upstream_log.close()  # the child holds its own descriptor
                _wait_for_port("127.0.0.1", upstream_port, timeout_s=30, proc=upstream)
                from igris_project.demo.seed import seed_demo

                info = seed_demo(
                    base_url=base_url,
                    upstream_url=f"http://127.0.0.1:{upstream_port}/mcp",
                    state_path=Path(settings.VAR_DIR) / "demo.json",
                )
                self._banner(info)
            self._serve(host, port, opts["workers"])
        finally:
            if upstream is not None and upstream.poll() is None:
                os.killpg(upstream.pid, signal.SIGTERM)
                try:
                    upstream.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(upstream.pid, signal.SIGKILL)
                    upstream.wait()

    def _banner(self, info: Any) -> None:
        out = self.stdout
        line = "─" * 72
        out.write(line)
        out.write("  igris is starting (embedded default: SQLite, in-process hot state)")
        out.write(line)
        out.write(f"  Console      {info.console_url}")
        out.write(f"  Login        {info.email}  /  {info.password}")
        out.write(f"  Admin        {info.admin_url}  (same login: read-only tables)")
        out.write(f"  API key      {info.api_key}")
        out.write(f"  Proxy URL    {info.proxy_url}")
        out.write(f"  Policy       {info.policy}")
        out.write(f"  Upstream     {info.upstream_url}  (demo MCP server, direct)")
        out.write(f"  Upstream log {upstream_log_path()}")
        out.write(f"  Saved to     {Path(settings.VAR_DIR) / 'demo.json'}")
        out.write("")
        out.write(
            "  Try it:  claude mcp add --transport http igris-demo "
            f'{info.proxy_url} --header "Authorization: Bearer {info.api_key}"'
        )
        out.write(line)
        self.stdout.flush()

    def _serve(self, host: str, port: int, workers: int) -> None:
        if workers > 1:
            raise CommandError(
                "the embedded default runs one process; use make run-prod for workers"
            )
        config = uvicorn.Config(
            "igris_project.asgi:application",
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="info",
            access_log=False,
            proxy_headers=False,  # igris_project.forwarded decides whom to believe
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)

        def stop(signum: int, frame: Any) -> None:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
