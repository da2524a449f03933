"""`make run-prod`: two web workers, the audit writer and a Celery worker with beat, supervised,
on shared PostgreSQL and Redis. Calls through either worker are stored and chained by the writer
process, beat signs a checkpoint, a killed child is restarted, SIGTERM stops every process."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.conftest import free_port
from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_multiprocess import ROOT, igris_env
from tests.proxy.test_proxy_e2e import _publish

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.timeout(240),  # five processes start and stop on two cores
]


def _descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, with its command line (from /proc)."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        cmdlines[int(entry.name)] = cmd
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = cmdlines[pid]
                frontier.append(pid)
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its (re-)parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids(tree: dict[int, str], needle: str) -> list[int]:
    return [pid for pid, cmd in tree.items() if needle in cmd]


async def _until(predicate, *, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {within} s")


async def test_run_prod_serves_chains_signs_restarts_and_stops(
    demo_server, acme, alice, acme_key, tmp_path
):
    from compliance.audit.verify import verify_chain
    from compliance.models import AuditEvent, Checkpoint

    await _publish(acme, alice, [], posture="allow")
    port = free_port()
    env = igris_env(
        IGRIS_VAR_DIR=str(tmp_path),
        IGRIS_CHECKPOINT_INTERVAL_S="1",
        IGRIS_CELERY_QUEUE=f"igris-test-{secrets.token_hex(4)}",
        IGRIS_KEY_RATE_PER_MIN="1000000",
    )
    log = (tmp_path / "run-prod.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "igris_prod", "--workers", "2", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        async def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / "run-prod.log").read_text()[-3000:]
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{base}/healthz", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        await _until(healthy, within=60, what="healthy")
        # The web workers name the port they serve on in the 401 challenge (IGRIS_PUBLIC_URL
        # defaults to it), not one written in the code.
        async with httpx.AsyncClient() as http:
            refused = await http.post(
                f"{base}/proxy/demo/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                timeout=10,
            )
        assert refused.status_code == 401
        assert f'resource_metadata="{base}/.well-known/' in refused.headers["www-authenticate"]
        tree = _descendants(proc.pid)
        [web] = [pid for pid in _pids(tree, "uvicorn") if _descendants(pid)]
        assert len(_descendants(web)) >= 2, tree  # two worker processes under uvicorn
        [writer] = _pids(tree, "run_audit_writer")
        assert _pids(tree, "celery"), tree

        async def calls(prefix: str, n: int) -> list[str]:
            sent = []
            for i in range(n):
                # A fresh connection per call, so the kernel spreads them over both workers.
                async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                    answer = await _post_call(
                        http, acme_key[1], "echo", {"text": f"{prefix}{i}"}, id=i
                    )
                assert answer.status_code == 200, answer.text
                sent.append(f"{prefix}{i}")
            return sent

        first = await calls("a", 30)

        def stored_texts() -> set[str]:
            return {
                (row or {}).get("text")
                for row in AuditEvent.objects.filter(org_id=acme.id, type="tool_call").values_list(
                    "arguments", flat=True
                )
            }

        async def all_stored(texts) -> bool:
            return set(texts) <= await sync_to_async(stored_texts)()

        await _until(lambda: all_stored(first), within=30, what="the writer stored the calls")

        async def signed():
            return await sync_to_async(
                lambda: Checkpoint.objects.filter(org_id=acme.id, seq__gte=len(first)).first()
            )()

        await _until(signed, within=45, what="beat signed a checkpoint")

        os.kill(writer, signal.SIGKILL)  # the supervisor restarts a dead child

        async def restarted():
            pids = _pids(_descendants(proc.pid), "run_audit_writer")
            return pids and pids != [writer]

        await _until(restarted, within=20, what="the writer was restarted")
        second = await calls("b", 10)
        await _until(lambda: all_stored(second), within=30, what="the new writer stored calls")
        result = await sync_to_async(verify_chain)(acme.id)
        assert result.ok, result

        everything = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0

        async def all_gone() -> bool:
            return not [pid for pid in everything if _running(pid)]

        await _until(all_gone, within=10, what=f"every child stopped ({everything})")
    finally:
        # Children run in sessions of their own: list them before the supervisor dies, or
        # they are re-parented and lost to this walk (an early failure would leak them).
        left = _descendants(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in left:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
        await sync_to_async(connections.close_all)()
