"""Two igris web processes sharing PostgreSQL and Redis: a publish or a kill made through one
takes effect in the other within about a second (hot-state notifications)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections

from tests.conftest import free_port
from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_proxy_e2e import _publish

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{db['USER']}{password}@{host}/{db['NAME']}"


class Served(str):
    """The base URL of a served process, with the process itself (for kill -9 tests)."""

    proc: subprocess.Popen[bytes]


def igris_env(**extra_env: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        IGRIS_ENV="development",
        IGRIS_HOTSTATE_PREFIX=settings.IGRIS_HOTSTATE_PREFIX,
        IGRIS_EMBEDDED_AUDIT_WRITER="false",
        SECRET_KEY=settings.SECRET_KEY,
        IGRIS_ENCRYPTION_KEY=settings.IGRIS_ENCRYPTION_KEY,
    )
    env.update(extra_env)  # may override the defaults above (DATABASE_URL through a gate)
    return env


@contextmanager
def igris_process(**extra_env: str) -> Iterator[Served]:
    """One igris web process (uvicorn, production-like) on a free port, always stopped."""
    port = free_port()
    env = igris_env(**extra_env)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "igris_project.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-graceful-shutdown",  # as in production (igris_prod)
            "10",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = Served(f"http://127.0.0.1:{port}")
    base.proc = proc
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "igris exited early"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("igris did not become healthy")
        yield base
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], *, grace_s: float = 15.0) -> None:
    """SIGTERM the process's group (it was started in a session of its own), SIGKILL it after
    `grace_s`; the process is reaped either way."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def audit_writer_process(
    *args: str, env: dict[str, str], log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py run_audit_writer` (the auditwriter process) with `args`, always stopped."""
    out = log.open("wb") if log is not None else None
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_audit_writer", *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out is not None else None,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        if out is not None:
            out.close()


# A bound that only a change which never arrives can exceed: how fast it arrives is measured in
# make bench, not asserted here.
EFFECT_BOUND_S = 30.0


async def _until(predicate) -> float:
    start = time.monotonic()
    while time.monotonic() - start < EFFECT_BOUND_S:
        if await predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not effective within {EFFECT_BOUND_S} s")


async def test_a_publish_and_a_kill_reach_every_process(demo_server, acme, alice, acme_key):
    from governance.services.sessions import sessions_kill_for_key

    await _publish(acme, alice, [], posture="allow")
    with igris_process() as one, igris_process() as two:
        async with httpx.AsyncClient(base_url=one) as a, httpx.AsyncClient(base_url=two) as b:
            for http in (a, b):  # both processes have cached the allow-all snapshot
                assert (
                    await _post_call(http, acme_key[1], "echo", {"text": "warm"})
                ).status_code == 200
                assert (
                    not (await _post_call(http, acme_key[1], "echo", {"text": "warm"}))
                    .json()["result"]
                    .get("isError")
                )
            await _publish(
                acme,
                alice,
                [{"id": "stop-echo", "action": "deny", "match": {"tools": ["echo"]}}],
                posture="allow",
            )

            async def denied_everywhere() -> bool:
                answers = [await _post_call(h, acme_key[1], "echo", {"text": "x"}) for h in (a, b)]
                return all(
                    r.status_code == 200 and r.json()["result"].get("isError") for r in answers
                )

            publish_delay = await _until(denied_everywhere)
            await sync_to_async(sessions_kill_for_key)(
                org=acme, actor=alice, key=acme_key[0], reason="leaked"
            )

            async def refused_everywhere() -> bool:
                answers = [
                    await _post_call(h, acme_key[1], "add", {"a": 1, "b": 1}) for h in (a, b)
                ]
                return all(r.status_code == 403 for r in answers)

            kill_delay = await _until(refused_everywhere)
    print(f"publish propagated in {publish_delay:.3f} s, kill in {kill_delay:.3f} s")
    await sync_to_async(connections.close_all)()
