"""PostgreSQL unavailable (production shape: real uvicorn processes, Redis, a TCP gate in front of
the database): the proxy keeps serving from its caches while the audit stream buffers, the audit
writer retries and catches up without losing or repeating an event, the console and the REST API
answer 503 plainly, and the stream's bound makes the proxy fail closed instead of trimming."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections

from tests.faults.tcpgate import TcpGate
from tests.proxy.test_kill_switch import MODERN, _post_call
from tests.proxy.test_multiprocess import audit_writer_process, igris_env, igris_process
from tests.proxy.test_proxy_e2e import _publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST_CACHES = {
    # Short TTLs so the caches must refresh during the outage: the stale path is what is tested.
    "IGRIS_PROXY_CACHE_TTL_S": "1",
    "IGRIS_KEY_CACHE_TTL_S": "1",
    "IGRIS_KEY_RATE_PER_MIN": "1000000",
}


def gated_database_url(gate: TcpGate) -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@127.0.0.1:{gate.port}/{db['NAME']}"


@contextmanager
def postgres_gate() -> Iterator[TcpGate]:
    db = connection.settings_dict
    with TcpGate(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as gate:
        yield gate


@contextmanager
def audit_writer(database_url: str, log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    with audit_writer_process(
        "--batch", "200", env=igris_env(DATABASE_URL=database_url), log=log_dir / "writer.log"
    ) as proc:
        yield proc


async def _stream_length() -> int:
    from governance.events import AUDIT_STREAM
    from governance.runtime.hotstate.redis import RedisHotState

    hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
    try:
        return await hs.stream_len(AUDIT_STREAM)
    finally:
        await hs.close()


async def _drain_stream() -> None:
    from compliance.audit.writer import drain_stream
    from governance.runtime.hotstate.redis import RedisHotState

    hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
    try:
        await drain_stream(hs)
    finally:
        await hs.close()


def _stored_texts(org_id) -> Counter[str]:
    from compliance.models import AuditEvent

    rows = AuditEvent.objects.filter(org_id=org_id, type="tool_call").values_list(
        "arguments", flat=True
    )
    return Counter((row or {}).get("text") for row in rows)


def _console_cookie(user) -> dict[str, str]:
    from django.test import Client

    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


async def _calls(base: str, token: str, prefix: str, n: int, workers: int = 4) -> list[str]:
    """n echo calls from a few concurrent clients; returns the texts that were answered."""
    answered: list[str] = []

    async def worker(w: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for i in range(w, n, workers):
                text = f"{prefix}-{i}"
                answer = await _post_call(http, token, "echo", {"text": text}, id=i + 1)
                assert answer.status_code == 200, answer.text
                assert answer.json()["result"]["content"][0]["text"] == text
                answered.append(text)

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return answered


async def _listed_tools(http: httpx.AsyncClient, token: str) -> list[str]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "lister", "version": "1"},
    }
    answer = await http.post(
        "/proxy/demo/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}},
        headers={**MODERN, "Authorization": f"Bearer {token}", "Mcp-Method": "tools/list"},
    )
    assert answer.status_code == 200, answer.text
    return [tool["name"] for tool in answer.json()["result"]["tools"]]


async def test_the_proxy_serves_and_the_writer_catches_up_through_a_database_outage(
    demo_server, acme, alice, acme_key, tmp_path
):
    from compliance.audit.verify import verify_chain

    await _publish(acme, alice, [], posture="allow")
    cookies = await sync_to_async(_console_cookie)(alice)
    api_headers = {"Authorization": f"Bearer {acme_key[1]}"}
    with postgres_gate() as gate:
        gated = gated_database_url(gate)
        with (
            igris_process(DATABASE_URL=gated, **FAST_CACHES) as base,
            audit_writer(gated, tmp_path) as writer,
        ):
            async with httpx.AsyncClient(base_url=base, timeout=10, cookies=cookies) as http:
                answered = await _calls(base, acme_key[1], "before", 8)
                console = await http.get("/")
                assert console.status_code < 500
                assert (await http.get("/api/v1/servers/", headers=api_headers)).status_code == 200
                listed = await _listed_tools(http, acme_key[1])
                assert "echo" in listed

                gate.down()
                await asyncio.sleep(1.5)  # every cache entry is now past its TTL

                health = await http.get("/healthz")
                assert health.status_code == 503
                assert health.json()["checks"]["database"]["ok"] is False
                console = await http.get("/")
                assert console.status_code == 503
                assert console.headers["content-type"].startswith("text/html")
                assert console.headers["retry-after"] == "5"
                assert "temporarily unavailable" in console.text
                api = await http.get("/api/v1/servers/", headers=api_headers)
                assert api.status_code == 503
                assert api.headers["content-type"] == "application/problem+json"
                assert api.headers["retry-after"] == "5"
                assert api.json()["code"] == "database_unavailable"

                # An unchanged catalogue needs no database write: listing still works.
                assert await _listed_tools(http, acme_key[1]) == listed
                during = await _calls(base, acme_key[1], "during", 120)
                answered += during
                assert len(during) == 120
                assert await _stream_length() >= 120  # buffered, waiting for the database
                assert writer.poll() is None, "the audit writer died during the outage"
                assert gate.accepted > 0

                gate.up()
                back = time.monotonic()
                deadline = back + 60
                while time.monotonic() < deadline:
                    stored = await sync_to_async(_stored_texts)(acme.id)
                    if all(stored[text] for text in answered):
                        break
                    await asyncio.sleep(0.1)
                caught_up_s = time.monotonic() - back
                assert writer.poll() is None
                answered += await _calls(base, acme_key[1], "after", 8)
                console = await http.get("/")
                assert console.status_code < 500
    stored = await sync_to_async(_stored_texts)(acme.id)
    assert [text for text in answered if stored[text] != 1] == []  # each one, exactly once
    result = await sync_to_async(verify_chain)(acme.id)
    assert result.ok, result
    print(f"writer caught up {len(during)} buffered events {caught_up_s:.2f} s after the return")
    await sync_to_async(connections.close_all)()


async def test_a_full_audit_backlog_makes_the_proxy_refuse_calls_rather_than_trim(
    demo_server, acme, alice, acme_key
):
    await _publish(acme, alice, [], posture="allow")
    limit = 5
    with igris_process(IGRIS_AUDIT_STREAM_MAX_BACKLOG=str(limit), **FAST_CACHES) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            refused = None
            for i in range(60):  # no writer runs: the stream only grows
                answer = await _post_call(http, acme_key[1], "echo", {"text": f"t{i}"}, id=i)
                if answer.status_code == 503:
                    refused = answer
                    break
                assert answer.status_code == 200
                await asyncio.sleep(0.1)
            assert refused is not None, "the backlog bound never took effect"
            error = refused.json()["error"]
            assert error["message"].startswith("audit backlog full")
            assert error["data"] == {"reason": "audit_backlog_full", "limit": limit}
            assert refused.headers["retry-after"] == "5"
            length = await _stream_length()
            assert length > limit
            for i in range(3):  # refused calls are neither forwarded nor recorded
                again = await _post_call(http, acme_key[1], "echo", {"text": f"x{i}"}, id=100 + i)
                assert again.status_code == 503
            assert await _stream_length() == length

            await _drain_stream()  # the writer's own code, run here to spare a process start
            assert await _stream_length() == 0
            for _ in range(50):  # the next length sample (within a second) reopens the gate
                answer = await _post_call(http, acme_key[1], "echo", {"text": "open"}, id=200)
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert answer.status_code == 200
    await sync_to_async(connections.close_all)()
