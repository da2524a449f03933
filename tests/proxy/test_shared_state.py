"""Two igris processes behind a round-robin TCP balancer, with no affinity: consecutive requests of
one legacy MCP session land on different processes, and the session, its counters and the key's
rate limit behave as if one process served them all (state in Redis, not in a process)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import httpx2
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_multiprocess import igris_process
from tests.proxy.test_proxy_e2e import _publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def round_robin(*backends: str) -> AsyncIterator[tuple[str, Counter[str]]]:
    """A TCP balancer on a free port: each new connection goes to the next backend in turn.
    Yields its base URL and a count of connections per backend."""
    ports = itertools.cycle(backends)
    served: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = next(ports)
        served[backend] += 1
        host, port = backend.removeprefix("http://").split(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        pair = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        tasks.update(pair)
        await asyncio.gather(*pair)
        tasks.difference_update(pair)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", served
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def test_a_legacy_session_hops_between_processes(demo_server, acme, alice, acme_key):
    from governance.models import AgentSession

    await _publish(acme, alice, [], posture="allow")
    with igris_process() as one, igris_process() as two:
        async with round_robin(one, two) as (base, served):
            # No keep-alive: every request is a new connection, so the balancer alternates.
            http = httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {acme_key[1]}"},
                timeout=httpx2.Timeout(30.0),
                limits=httpx2.Limits(max_keepalive_connections=0),
            )
            async with (
                http,
                Client(
                    streamable_http_client(f"{base}/proxy/demo/mcp", http_client=http),
                    mode="legacy",
                ) as client,
            ):
                tools = await client.list_tools()
                assert "echo" in {t.name for t in tools.tools}
                for i in range(8):
                    result = await client.call_tool("echo", {"text": f"hop {i}"})
                    assert not result.is_error
                    assert result.content[0].text == f"hop {i}"
            assert served[one] >= 4 and served[two] >= 4, served

        def recorded_calls() -> int:
            rows = list(AgentSession.objects.filter(org=acme, era="legacy"))
            assert len(rows) <= 1, rows  # one session, however many processes served it
            return rows[0].calls if rows else 0

        # Both processes flush their share of the calls (initialize, tools/list and 8 calls)
        # into the one session row, each within about a second; the processes keep running, so
        # this is the background flush, not the one at shutdown.
        calls, deadline = 0, time.monotonic() + 20
        while time.monotonic() < deadline:
            calls = await sync_to_async(recorded_calls)()
            if calls >= 10:
                break
            await asyncio.sleep(0.2)
        assert calls == 10, calls
    await sync_to_async(connections.close_all)()


async def test_a_key_s_rate_limit_is_one_budget_across_processes(
    demo_server, acme, alice, acme_key
):
    await _publish(acme, alice, [], posture="allow")
    limit = 10
    with (
        igris_process(IGRIS_KEY_RATE_PER_MIN=str(limit)) as one,
        igris_process(IGRIS_KEY_RATE_PER_MIN=str(limit)) as two,
    ):
        statuses: Counter[int] = Counter()
        async with httpx.AsyncClient(base_url=one) as a, httpx.AsyncClient(base_url=two) as b:
            for i in range(2 * limit + 4):
                answer = await _post_call((a, b)[i % 2], acme_key[1], "echo", {"text": "x"})
                statuses[answer.status_code] += 1
                if answer.status_code == 429:
                    assert answer.headers["Retry-After"]
                    assert answer.json()["error"]["code"] == -31005
    # One budget of `limit` calls per minute, not one per process (which would allow twice that);
    # the GCRA may have earned one more call back during the run.
    assert limit <= statuses[200] <= limit + 1, statuses
    assert statuses[429] == 2 * limit + 4 - statuses[200]
    await sync_to_async(connections.close_all)()
