"""Client faults against a real igris process (uvicorn, httptools): a slowloris body is cut at the
body deadline, thousands of idle SSE streams cost bounded memory and file descriptors and release
them when the clients leave, and a client that drops a stream mid-way cancels the upstream.

Clients here are raw asyncio sockets (cheap enough to hold thousands). The upstream is a raw
asyncio HTTP server that answers every call with an SSE stream holding one progress event and
then stays silent: what is measured is igris, not an MCP server's own per-stream cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.faults.test_postgres_down import _stream_length
from tests.proxy.test_multiprocess import igris_process
from tests.proxy.test_proxy_e2e import _publish
from tests.support import tcp_connections

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

STREAMS = 2_000
# proxy/upstream.py pools at most 256 connections per upstream host and port, so the streams
# are spread over several upstream listeners (250 each), as they would be over several servers.
UPSTREAMS = 8
PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 0}}


class HoldingUpstream:
    """Answers each request with an SSE stream (one progress event), then holds it open."""

    def __init__(self) -> None:
        self.open = 0
        self.served = 0
        self.closed = asyncio.Event()

    @asynccontextmanager
    async def serving(self, listeners: int = 1) -> AsyncIterator[list[str]]:
        servers = [
            await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            for _ in range(listeners)
        ]
        try:
            yield [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}/mcp" for s in servers]
        finally:
            for server in servers:
                server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.served += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            event = f"event: message\ndata: {json.dumps(PROGRESS)}\n\n".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                + f"{len(event):x}\r\n".encode()
                + event
                + b"\r\n"
            )
            await writer.drain()
            await reader.read()  # silent until the proxy hangs up
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.open -= 1
            if self.open == 0:
                self.closed.set()


def _request(token: str, *, body: bytes, length: int | None = None, slug: str = "hold0") -> bytes:
    head = (
        f"POST /proxy/{slug}/mcp HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json, text/event-stream\r\n"
        "MCP-Protocol-Version: 2026-07-28\r\n"
        "Mcp-Method: tools/call\r\n"
        "Mcp-Name: slow\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def _call_body(i: int) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "tools/call",
            "params": {"name": "slow", "arguments": {"seconds": 600}},
        }
    ).encode()


async def _open_stream(
    port: int, token: str, i: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A held tools/call stream: returns once its first (progress) event has arrived."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request(token, body=_call_body(i), slug=f"hold{i % UPSTREAMS}"))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(head + await asyncio.wait_for(reader.read(1000), 5))
    seen = b""
    while b"notifications/progress" not in seen:
        chunk = await asyncio.wait_for(reader.read(4096), 30)
        assert chunk, "the stream ended early"
        seen += chunk
    return reader, writer


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _pool_sockets(pid: int) -> int:
    """The process's connections to Redis and PostgreSQL: pools that keep what a burst needed
    (closing 2,000 streams at once records 2,000 audit events concurrently), not a leak."""
    from urllib.parse import urlsplit

    from django.conf import settings

    from tests.proxy.test_multiprocess import database_url

    ports = {urlsplit(settings.REDIS_URL).port or 6379, urlsplit(database_url()).port or 5432}
    return tcp_connections(ports, pid)


def _own_fds(pid: int) -> int:
    return _fds(pid) - _pool_sockets(pid)


async def _until(predicate, within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def _hold_servers(acme, alice, urls: list[str]) -> None:
    from governance.services.servers import server_create

    for n, url in enumerate(urls):
        await sync_to_async(server_create)(
            org=acme, actor=alice, name=f"Hold {n}", slug=f"hold{n}", upstream_url=url
        )
    await _publish(acme, alice, [], posture="allow")


async def test_a_slowloris_body_is_cut_at_the_body_deadline_with_a_408(acme, alice, acme_key):
    upstream = HoldingUpstream()
    async with upstream.serving() as urls:
        await _hold_servers(acme, alice, urls)
        with igris_process(IGRIS_PROXY_BODY_TIMEOUT_S="2") as base:
            port = int(base.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            body = _call_body(1)
            writer.write(_request(acme_key[1], body=b"", length=len(body)))
            await writer.drain()

            async def trickle() -> None:
                for byte in body:  # one byte every half second: ~50 s for the whole body
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.5)

            trickling = asyncio.create_task(trickle())
            try:
                answer = await asyncio.wait_for(reader.read(), 20)  # until igris closes
            finally:
                trickling.cancel()
                await asyncio.gather(trickling, return_exceptions=True)
                writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in head.lower()
    error = json.loads(payload)["error"]
    assert error["code"] == -32600
    assert error["message"] == "The request body did not arrive within 2 s."
    assert upstream.served == 0  # nothing was forwarded
    await sync_to_async(connections.close_all)()


async def test_thousands_of_idle_sse_streams_cost_bounded_memory_and_are_released(
    acme, alice, acme_key
):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * STREAMS + 1024  # this process holds both ends' sockets; igris inherits it
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    upstream = HoldingUpstream()
    async with upstream.serving(UPSTREAMS) as urls:
        await _hold_servers(acme, alice, urls)
        with igris_process(IGRIS_KEY_RATE_PER_MIN="1000000") as base:
            port, pid = int(base.rsplit(":", 1)[1]), base.proc.pid
            # Warm up with the same burst pattern, so pools (Redis, upstream) are at their size.
            warm = []
            for start in range(0, 200, 25):
                warm += await asyncio.gather(
                    *(_open_stream(port, acme_key[1], i) for i in range(start, start + 25))
                )
            for _, writer in warm:
                writer.close()
            await _until(lambda: upstream.open == 0, 20)
            await asyncio.sleep(0.5)
            rss_before, fds_before = _rss_kib(pid), _own_fds(pid)
            streams = []
            # Opened 25 at a time, as agents ramp up; closed all at once below.
            for start in range(0, STREAMS, 25):
                streams += await asyncio.gather(
                    *(_open_stream(port, acme_key[1], i) for i in range(start, start + 25))
                )
            await asyncio.sleep(1.0)
            rss_open, fds_open = _rss_kib(pid), _own_fds(pid)
            assert upstream.open == STREAMS
            for _, writer in streams:
                writer.close()
            await _until(lambda: upstream.open == 0, 30)  # every upstream request was closed
            await _until(lambda: _own_fds(pid) <= fds_before + 50, 30)
            rss_closed = _rss_kib(pid)
            # Every stream, cut by its client, is recorded as cancelled: 2,000 audit appends at
            # once queue for a Redis connection instead of failing.
            recorded = await _stream_length()
    assert recorded >= len(warm) + STREAMS  # (plus the rate-spike anomalies of the burst)
    per_stream_kib = (rss_open - rss_before) / STREAMS
    fds_per_stream = (fds_open - fds_before) / STREAMS
    print(
        f"{STREAMS} idle SSE streams: {per_stream_kib:.1f} KiB RSS and {fds_per_stream:.2f} fds "
        f"each; RSS {rss_before} -> {rss_open} -> {rss_closed} KiB after closing, "
        f"fds {fds_before} -> {fds_open}"
    )
    assert per_stream_kib < 200
    assert fds_per_stream <= 2.1  # the client's socket and the upstream's, nothing more
    await sync_to_async(connections.close_all)()


async def test_a_client_dropping_a_stream_mid_way_cancels_the_upstream_request(
    acme, alice, acme_key
):
    upstream = HoldingUpstream()
    async with upstream.serving() as urls:
        await _hold_servers(acme, alice, urls)
        with igris_process() as base:
            port = int(base.rsplit(":", 1)[1])
            _, writer = await _open_stream(port, acme_key[1], 0)  # the upstream is streaming
            assert upstream.open == 1
            writer.close()
            await asyncio.wait_for(upstream.closed.wait(), 10)
    assert upstream.open == 0
    await sync_to_async(connections.close_all)()
