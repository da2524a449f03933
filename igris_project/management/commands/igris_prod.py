"""`make run-prod`: the production shape on one machine, against DATABASE_URL and REDIS_URL.

Starts and supervises:
- web: uvicorn with N worker processes (uvloop, httptools), all sharing PostgreSQL and Redis;
- audit writer: `manage.py run_audit_writer`, the single consumer that chains the audit log;
- Celery: one worker with the beat schedule (checkpoints, chain verification, idle sessions);
- optionally (`--demo`) the demo MCP server, seeded as in `make run`.

A child that dies is restarted with a growing back-off; one that keeps dying (5 times in 60 s)
stops the whole group, so a broken deployment fails loudly instead of flapping. SIGINT/SIGTERM
stop every child (SIGTERM, then SIGKILL after a grace period), each in its own process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from igris_project.management.commands.igris_run import Command as EmbeddedCommand
from igris_project.management.commands.igris_run import (
    _wait_for_port,
    adopt_public_url,
    upstream_log_path,
)

GRACE_S = 15.0
RESTART_WINDOW_S = 60.0
RESTART_LIMIT = 5


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)
    next_start: float = 0.0
    log: Path | None = None  # output to this file instead of the terminal

    def start(self, env: dict[str, str]) -> None:
        if self.log is None:
            self.proc = subprocess.Popen(self.argv, env=env, start_new_session=True)
            return
        with self.log.open("ab") as out:  # appended: a restart keeps what came before
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        """Signal the child's whole process group: uvicorn's and Celery's own workers included,
        even after the group's leader has exited."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)


class Command(BaseCommand):
    help = "Run igris in its production shape: web workers, audit writer and Celery, supervised."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3100")))
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2"))
        )
        parser.add_argument("--celery-concurrency", type=int, default=1)
        parser.add_argument(
            "--demo", action="store_true", help="Also start and seed the demo MCP server."
        )
        parser.add_argument(
            "--upstream-port",
            type=int,
            default=int(os.environ.get("IGRIS_DEMO_UPSTREAM_PORT", "3199")),
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            raise CommandError(
                "run-prod needs DATABASE_URL (PostgreSQL); make run is the embedded default"
            )
        if not settings.REDIS_URL:
            raise CommandError(
                "run-prod needs REDIS_URL: web workers share hot state through Redis"
            )
        if opts["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        base_url = adopt_public_url(opts["host"], opts["port"])
        call_command("migrate", interactive=False, verbosity=0)
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        children = []
        if opts["demo"]:
            children.append(
                Child(
                    "demo-upstream",
                    [
                        sys.executable,
                        manage,
                        "run_demo_upstream",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(opts["upstream_port"]),
                    ],
                    log=upstream_log_path(),
                )
            )
        children += [
            Child("web", self._web_argv(opts)),
            Child("audit-writer", [sys.executable, manage, "run_audit_writer"]),
            Child(
                "celery",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "igris_project",
                    "worker",
                    "--beat",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    str(opts["celery_concurrency"]),
                    "--without-gossip",
                    "--without-mingle",
                    "--schedule",
                    str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
                ],
            ),
        ]
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        # Children run the production shape: the web workers never embed the audit writer.
        env = {**os.environ, "IGRIS_EMBEDDED_AUDIT_WRITER": "false"}
        if settings.IGRIS_PUBLIC_URL:  # the served address, unless the operator named one
            env["IGRIS_PUBLIC_URL"] = settings.IGRIS_PUBLIC_URL
        stopping = {"signal": 0}

        def stop(signum: int, frame: Any) -> None:
            stopping["signal"] = signum

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in children:
                child.start(env)
                self.stdout.write(f"started {child.name} (pid {child.proc.pid})")  # type: ignore[union-attr]
                if child.name == "demo-upstream":
                    _wait_for_port(
                        "127.0.0.1", opts["upstream_port"], timeout_s=30, proc=child.proc
                    )  # type: ignore[arg-type]
                    self._seed(opts, base_url)
            self.stdout.write(
                f"igris (production shape) on {base_url}: "
                f"{opts['workers']} web workers, audit writer, Celery worker with beat"
            )
            self.stdout.flush()
            failed = self._supervise(children, env, stopping)
        finally:
            self._stop_all(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed:
            raise CommandError(f"{failed} kept exiting; stopped everything")

    @staticmethod
    def _web_argv(opts: dict[str, Any]) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "igris_project.asgi:application",
            "--host",
            opts["host"],
            "--port",
            str(opts["port"]),
            "--workers",
            str(opts["workers"]),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--lifespan",
            "on",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "10",
            "--timeout-keep-alive",
            "5",
            "--no-proxy-headers",  # igris_project.forwarded decides whom to believe
        ]
        return argv

    def _seed(self, opts: dict[str, Any], base_url: str) -> None:
        from igris_project.demo.seed import seed_demo

        info = seed_demo(
            base_url=base_url,
            upstream_url=f"http://127.0.0.1:{opts['upstream_port']}/mcp",
            state_path=Path(settings.VAR_DIR) / "demo.json",
        )
        EmbeddedCommand(stdout=self.stdout, stderr=self.stderr)._banner(info)

    def _supervise(
        self, children: list[Child], env: dict[str, str], stopping: dict[str, int]
    ) -> str | None:
        while not stopping["signal"]:
            time.sleep(0.25)
            now = time.monotonic()
            for child in children:
                if child.alive() or stopping["signal"]:
                    continue
                if child.next_start == 0.0:
                    code = child.proc.returncode if child.proc else None
                    while child.restarts and now - child.restarts[0] > RESTART_WINDOW_S:
                        child.restarts.popleft()
                    if len(child.restarts) >= RESTART_LIMIT:
                        self.stderr.write(f"{child.name} exited {RESTART_LIMIT} times in 60 s")
                        return child.name
                    delay = min(30.0, 0.5 * 2 ** len(child.restarts))
                    self.stderr.write(f"{child.name} exited with {code}; restarting in {delay:g} s")
                    child.signal_group(signal.SIGKILL)  # workers orphaned by a dead leader
                    child.next_start = now + delay
                elif now >= child.next_start:
                    child.restarts.append(now)
                    child.next_start = 0.0
                    child.start(env)
        return None

    def _stop_all(self, children: list[Child]) -> None:
        # Web first (stop taking calls), then the writer drains what they recorded, then the rest.
        order = sorted(
            children,
            key=lambda c: (
                ["web", "audit-writer"].index(c.name) if c.name in {"web", "audit-writer"} else 2
            ),
        )
        for child in order:
            child.signal_group(signal.SIGTERM)
            if child.proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=GRACE_S)
            child.signal_group(signal.SIGKILL)
            child.proc.wait()
