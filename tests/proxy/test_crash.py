"""kill -9 of the web process under load: every call that got an answer is in the audit table
after the writer catches up, and the chain verifies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_multiprocess import ROOT, igris_env, igris_process
from tests.proxy.test_proxy_e2e import _publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def test_no_answered_call_is_lost_when_the_web_process_is_killed(
    demo_server, acme, alice, acme_key
):
    from compliance.audit.verify import verify_chain
    from compliance.models import AuditEvent

    await _publish(acme, alice, [], posture="allow")
    answered: list[str] = []
    with igris_process(IGRIS_KEY_RATE_PER_MIN="1000000") as base:
        stop = asyncio.Event()

        async def worker(n: int) -> None:
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                i = 0
                while not stop.is_set():
                    text = f"w{n}-{i}"
                    i += 1
                    try:
                        answer = await _post_call(http, acme_key[1], "echo", {"text": text}, id=i)
                    except httpx.HTTPError:
                        return
                    if (
                        answer.status_code == 200
                        and answer.json()["result"]["content"][0]["text"] == text
                    ):
                        answered.append(text)

        workers = [asyncio.create_task(worker(n)) for n in range(8)]
        while len(answered) < 200:
            await asyncio.sleep(0.05)
        os.killpg(base.proc.pid, signal.SIGKILL)  # mid-load, no graceful shutdown
        base.proc.wait()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), timeout=20)
    writer = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "manage.py", "run_audit_writer", "--once"],
        cwd=ROOT,
        env=igris_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert writer.returncode == 0, writer.stderr
    stored = await sync_to_async(
        lambda: {
            (row or {}).get("text")
            for row in AuditEvent.objects.filter(org_id=acme.id, type="tool_call").values_list(
                "arguments", flat=True
            )
        }
    )()
    missing = [text for text in answered if text not in stored]
    assert len(answered) >= 200
    assert missing == []
    result = await sync_to_async(verify_chain)(acme.id)
    assert result.ok, result
    await sync_to_async(connections.close_all)()
