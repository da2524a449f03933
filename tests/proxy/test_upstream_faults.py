"""Misbehaving upstreams through the proxy, on real sockets: slow, hanging, resetting, invalid
JSON, giant answers, SSE streams that go silent or never end, and the circuit breaker.

The upstream here is a raw asyncio HTTP server (the SDK cannot misbehave on purpose) serving on
the test's own loop while igris serves in its thread. After every fault the proxy holds no
socket to the upstream (counted in /proc/self/net/tcp against this process's fds) and no task
beyond its own fixed ones. A connection back in aiohttp's pool after a complete answer is no
leak: the upstream closes idle connections after KEEPALIVE_S, as servers do, and the pool
lets them go.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.proxy.test_multiprocess import igris_process
from tests.proxy.test_proxy_e2e import _drain_events, _publish
from tests.support import proxy_app, tcp_connections

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TIMEOUT_S = 1.0  # the test servers' connect and total timeouts
SETTLE_S = 5.0  # bound on the wait for sockets and tasks to go away
KEEPALIVE_S = 0.5  # the upstream closes a connection idle this long
COOLDOWN_S = 2  # the breaker's, in the breaker test


class FaultyUpstream:
    """An HTTP/1.1 server whose behaviour is the request path: /ok, /slow, /hang, ..."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()  # connections that ended while streaming
        self.sent: Counter[str] = Counter()  # body bytes written
        self.failing = True  # /flaky answers 500 while set
        self.delay_s = 0.0  # /flaky waits this long before answering
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> FaultyUpstream:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), SETTLE_S)
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._handlers.add(asyncio.current_task())
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), KEEPALIVE_S)
                except TimeoutError:
                    return  # an idle keep-alive connection: closed, as servers do
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1].strip("/")
                length = next(
                    (
                        int(h.split(":", 1)[1])
                        for h in lines
                        if h.lower().startswith("content-length")
                    ),
                    0,
                )
                body = await reader.readexactly(length)
                self.hits[path] += 1
                request_id = json.loads(body).get("id") if body else None
                if not await getattr(self, f"_{path}")(request_id, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            self._handlers.discard(asyncio.current_task())
            writer.close()

    @staticmethod
    def _result(request_id: object) -> bytes:
        return json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "result": {"content": [], "isError": False}}
        ).encode()

    async def _json(
        self, writer: asyncio.StreamWriter, body: bytes, status: str = "200 OK"
    ) -> bool:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        return True

    async def _ok(self, request_id, reader, writer) -> bool:
        return await self._json(writer, self._result(request_id))

    async def _slow(self, request_id, reader, writer) -> bool:
        await asyncio.sleep(TIMEOUT_S * 3)
        return await self._json(writer, self._result(request_id))

    async def _hang(self, request_id, reader, writer) -> bool:
        await reader.read()  # until the proxy hangs up
        self.closed["hang"] += 1
        return False

    async def _reset(self, request_id, reader, writer) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            + b'{"jsonrpc":"2.0","id":1,"result":{"content":['
        )
        await writer.drain()
        writer.transport.abort()
        return False

    async def _drop(self, request_id, reader, writer) -> bool:
        writer.transport.abort()
        return False

    async def _invalid(self, request_id, reader, writer) -> bool:
        return await self._json(writer, b'{"jsonrpc":"2.0","id":1,"result":{oops')

    async def _giant(self, request_id, reader, writer) -> bool:
        """A JSON answer with no declared length that would never end."""
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        )
        chunk = b'{"pad":"' + b"x" * 65536
        while True:
            writer.write(chunk)
            await writer.drain()
            self.sent["giant"] += len(chunk)

    async def _sse(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Connection: close\r\n\r\n"
        )
        await writer.drain()

    async def _sse_silent(self, request_id, reader, writer) -> bool:
        await self._sse(writer)
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "hi"}}
        writer.write(f"event: message\ndata: {json.dumps(note)}\n\n".encode())
        await writer.drain()
        await reader.read()  # then nothing, until the proxy hangs up
        self.closed["sse_silent"] += 1
        return False

    async def _sse_chatty(self, request_id, reader, writer) -> bool:
        await self._sse(writer)
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "more"}}
        event = f"event: message\ndata: {json.dumps(note)}\n\n".encode()
        try:
            while True:
                writer.write(event)
                await writer.drain()
                self.sent["sse_chatty"] += len(event)
                await asyncio.sleep(0.02)
        except ConnectionError:
            self.closed["sse_chatty"] += 1
            return False

    async def _flaky(self, request_id, reader, writer) -> bool:
        await asyncio.sleep(self.delay_s)
        if self.failing:
            error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32603, "message": "x"}}
            return await self._json(writer, json.dumps(error).encode(), "500 Internal Server Error")
        return await self._ok(request_id, reader, writer)


def upstream_sockets(port: int) -> int:
    """This process's open TCP connections to `port` (a socket some fd still holds)."""
    return tcp_connections({port})


async def proxy_tasks() -> list[str]:
    """Names of the tasks alive on igris' event loop (counted on that loop)."""
    loop = proxy_app()._tasks[0].get_loop()

    async def names() -> list[str]:
        this = asyncio.current_task()
        return sorted(t.get_name() for t in asyncio.all_tasks() if t is not this)

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(names(), loop))


async def settled(port: int, tasks_before: list[str]) -> tuple[int, list[str]]:
    """Wait (bounded) until no socket to the upstream and no extra task is left."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        sockets, tasks = upstream_sockets(port), await proxy_tasks()
        if (sockets == 0 and len(tasks) <= len(tasks_before)) or time.monotonic() > deadline:
            return sockets, tasks
        await asyncio.sleep(0.05)


def call(request_id: int = 1, tool: str = "work") -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {
                "name": tool,
                "arguments": {},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                },
            },
        }
    ).encode()


def headers(token: str, tool: str = "work") -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }


async def add_server(acme, alice, slug: str, url: str):
    from governance.services.servers import server_create

    return await sync_to_async(server_create)(
        org=acme,
        actor=alice,
        name=slug,
        slug=slug,
        upstream_url=url,
        connect_timeout_s=TIMEOUT_S,
        total_timeout_s=TIMEOUT_S,
    )


def sse_messages(raw: bytes) -> list[dict]:
    return [json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:")]


async def events_of(org_id, slug: str, type_: str | None = None) -> list[dict]:
    events = [e for e in await _drain_events(org_id) if e.get("server_slug") == slug]
    return [e for e in events if type_ is None or e["type"] == type_]


@pytest.fixture
async def upstream():
    async with FaultyUpstream() as server:
        yield server


@pytest.fixture
async def warm(igris_url, acme, alice, acme_key) -> list[str]:
    """One good call through the proxy (so lazily started work exists); the tasks after it."""
    await _publish(acme, alice, [], posture="allow")
    async with FaultyUpstream() as healthy:
        await add_server(acme, alice, "healthy", healthy.url("ok"))
        async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
            answer = await http.post(
                "/proxy/healthy/mcp", content=call(), headers=headers(acme_key[1])
            )
        assert answer.status_code == 200, answer.text
    await asyncio.sleep(0.2)
    return await proxy_tasks()


JSON_FAULTS = [
    # path, status, code, what the error and the audit event say
    ("slow", 504, -31008, "did not answer within 1 s"),
    ("hang", 504, -31008, "did not answer within 1 s"),
    ("drop", 502, -31007, "ServerDisconnectedError"),
    ("reset", 502, -31007, "broke off mid-answer"),
    ("invalid", 502, -31009, "invalid JSON"),
    ("giant", 502, -31009, "exceeded 1048576 bytes"),
]


async def test_each_faulty_upstream_gets_a_clear_error_an_audit_event_and_leaks_nothing(
    igris_url, upstream, warm, acme, alice, acme_key, settings
):
    # One igris for every fault (each needs a second or less); the loop names the failing one.
    settings.IGRIS_BREAKER_FAILURES = 0  # six failures in a row must not open anything here
    proxy_app().deps.max_response = 1 << 20
    try:
        for path, status, code, says in JSON_FAULTS:
            await add_server(acme, alice, path, upstream.url(path))
            async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
                answer = await http.post(
                    f"/proxy/{path}/mcp", content=call(7), headers=headers(acme_key[1])
                )
            assert answer.status_code == status, (path, answer.text)
            error = answer.json()["error"]
            assert answer.json()["id"] == 7 and error["code"] == code, (path, error)
            assert says in error["message"], (path, error)
            assert upstream.hits[path] == 1, path
            [event] = await events_of(acme.id, path)
            assert event["result"] == "upstream_error", (path, event)
            assert says in event["data"]["error"], (path, event)
            sockets, tasks = await settled(upstream.port, warm)
            assert sockets == 0, path
            assert len(tasks) <= len(warm), (path, tasks, warm)
    finally:
        proxy_app().deps.max_response = int(settings.IGRIS_PROXY_MAX_RESPONSE_BYTES)
    # The giant answer was cut at the limit: the upstream wrote little more than socket
    # buffers hold, not the endless body it meant to.
    assert upstream.sent["giant"] < 16 * (1 << 20)
    await sync_to_async(connections.close_all)()


async def test_an_sse_stream_that_goes_silent_ends_with_a_timeout_error(
    igris_url, upstream, warm, acme, alice, acme_key
):
    await add_server(acme, alice, "quiet", upstream.url("sse_silent"))
    async with (
        httpx.AsyncClient(base_url=igris_url, timeout=30) as http,
        http.stream(
            "POST", "/proxy/quiet/mcp", content=call(3), headers=headers(acme_key[1])
        ) as answer,
    ):
        assert answer.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([chunk async for chunk in answer.aiter_raw()])
    notification, final = sse_messages(raw)
    assert notification["method"] == "notifications/message"
    assert final["id"] == 3 and final["error"]["code"] == -31008
    assert "went silent for 1 s" in final["error"]["message"]
    [event] = await events_of(acme.id, "quiet")
    assert event["result"] == "upstream_error" and "went silent" in event["data"]["error"]
    sockets, tasks = await settled(upstream.port, warm)
    assert (sockets, upstream.closed["sse_silent"]) == (0, 1)
    assert len(tasks) <= len(warm), (tasks, warm)
    await sync_to_async(connections.close_all)()


async def test_a_never_ending_sse_stream_ends_when_the_client_leaves(
    igris_url, upstream, warm, acme, alice, acme_key
):
    await add_server(acme, alice, "chatty", upstream.url("sse_chatty"))
    async with (
        httpx.AsyncClient(base_url=igris_url, timeout=30) as http,
        http.stream(
            "POST", "/proxy/chatty/mcp", content=call(4), headers=headers(acme_key[1])
        ) as answer,
    ):
        received = b""
        async for chunk in answer.aiter_raw():
            received += chunk
            if received.count(b"notifications/message") >= 5:
                break
    deadline = time.monotonic() + SETTLE_S
    while not upstream.closed["sse_chatty"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert upstream.closed["sse_chatty"] == 1  # the proxy hung up on the upstream
    sockets, tasks = await settled(upstream.port, warm)
    assert sockets == 0
    assert len(tasks) <= len(warm), (tasks, warm)
    [event] = await events_of(acme.id, "chatty")
    assert event["result"] == "cancelled" and event["data"]["reason"] == "client disconnected"
    await sync_to_async(connections.close_all)()


async def _circuit(http, server_id) -> dict:
    answer = await http.get(f"/api/v1/servers/{server_id}/")
    assert answer.status_code == 200, answer.text
    return answer.json()["circuit"]


async def test_the_breaker_opens_fails_fast_and_one_trial_closes_it(
    igris_url, upstream, acme, alice, acme_key, settings
):
    settings.IGRIS_BREAKER_FAILURES = 3
    settings.IGRIS_BREAKER_COOLDOWN_S = COOLDOWN_S
    await _publish(acme, alice, [], posture="allow")
    server = await add_server(acme, alice, "flaky", upstream.url("flaky"))
    token = acme_key[1]
    async with (
        httpx.AsyncClient(base_url=igris_url, timeout=30) as http,
        httpx.AsyncClient(base_url=igris_url, headers={"Authorization": f"Bearer {token}"}) as api,
    ):
        assert await _circuit(api, server.id) == {
            "state": "closed",
            "failures": 0,
            "opened_at": None,
            "retry_at": None,
            "last_error": "",
        }
        for i in range(3):
            answer = await http.post("/proxy/flaky/mcp", content=call(i), headers=headers(token))
            assert answer.status_code == 500
        circuit = await _circuit(api, server.id)
        assert circuit["state"] == "open" and circuit["failures"] == 3
        assert "HTTP 500" in circuit["last_error"] and circuit["retry_at"] > circuit["opened_at"]

        refused = await http.post("/proxy/flaky/mcp", content=call(9), headers=headers(token))
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert refused.json()["id"] == 9 and error["code"] == -31013
        assert "circuit open" in error["message"] and error["data"]["retry_after_s"] >= 1
        assert upstream.hits["flaky"] == 3  # failed fast: the upstream never saw it

        # Cool-down over, still failing: several callers at once, one trial, open again.
        upstream.delay_s = 0.3
        await asyncio.sleep(COOLDOWN_S + 0.1)
        answers = await asyncio.gather(
            *(
                http.post("/proxy/flaky/mcp", content=call(20 + i), headers=headers(token))
                for i in range(4)
            )
        )
        assert sorted(a.status_code for a in answers) == [500, 503, 503, 503]
        assert upstream.hits["flaky"] == 4
        assert (await _circuit(api, server.id))["state"] == "open"

        # Healed: after the cool-down the trial succeeds and closes the circuit.
        upstream.failing, upstream.delay_s = False, 0.0
        await asyncio.sleep(COOLDOWN_S + 0.1)
        assert (await _circuit(api, server.id))["state"] == "half_open"
        trial = await http.post("/proxy/flaky/mcp", content=call(30), headers=headers(token))
        assert trial.status_code == 200 and trial.json()["id"] == 30
        assert (await _circuit(api, server.id))["state"] == "closed"
        assert upstream.hits["flaky"] == 5
    changes = await events_of(acme.id, "flaky", "upstream_circuit")
    assert [(e["data"]["state"], e["data"].get("reopened")) for e in changes] == [
        ("open", False),
        ("open", True),
        ("closed", None),
    ]
    assert changes[0]["actor"]["kind"] == "system" and changes[0]["data"]["failures"] == 3
    fast = [e for e in await events_of(acme.id, "flaky", "tool_call") if e["data"].get("circuit")]
    assert len(fast) == 4 and all(e["result"] == "upstream_error" for e in fast)
    await sync_to_async(connections.close_all)()


async def test_an_open_circuit_in_one_process_is_seen_by_another(
    igris_url, upstream, acme, alice, acme_key, settings
):
    """A second web process (uvicorn) opens the circuit; the one serving igris_url refuses
    without having seen a failure itself."""
    settings.IGRIS_BREAKER_FAILURES = 2
    await _publish(acme, alice, [], posture="allow")
    server = await add_server(acme, alice, "flaky", upstream.url("flaky"))
    token = acme_key[1]
    env = {"IGRIS_BREAKER_FAILURES": "2", "IGRIS_BREAKER_COOLDOWN_S": "60"}
    with igris_process(**env) as other:
        async with httpx.AsyncClient(base_url=other) as http:
            for i in range(2):
                answer = await http.post(
                    "/proxy/flaky/mcp", content=call(i), headers=headers(token)
                )
                assert answer.status_code == 500
    deadline = time.monotonic() + SETTLE_S
    while proxy_app().breakers.state(str(server.id)) != "open" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the transition travels by hot-state pub/sub
    async with httpx.AsyncClient(base_url=igris_url) as http:
        answer = await http.post("/proxy/flaky/mcp", content=call(5), headers=headers(token))
    assert answer.status_code == 503 and answer.json()["error"]["code"] == -31013
    assert upstream.hits["flaky"] == 2
    await sync_to_async(connections.close_all)()


async def test_a_listing_is_sent_once_more_on_a_broken_connection_and_a_call_never(
    igris_url, upstream, acme, alice, acme_key, settings
):
    """A pooled connection the server closed just as it was reused looks like an answerless
    disconnect: a listing, which changes nothing upstream, is sent again once; a tool call is
    not (it might have run)."""
    settings.IGRIS_BREAKER_FAILURES = 0
    await _publish(acme, alice, [], posture="allow")
    await add_server(acme, alice, "drop", upstream.url("drop"))
    listing = json.loads(call(3))
    listing.update(method="tools/list", params={"_meta": listing["params"]["_meta"]})
    list_headers = {**headers(acme_key[1]), "Mcp-Method": "tools/list"}
    del list_headers["Mcp-Name"]
    async with httpx.AsyncClient(base_url=igris_url, timeout=30) as http:
        listed = await http.post("/proxy/drop/mcp", json=listing, headers=list_headers)
        assert listed.status_code == 502, listed.text
        assert upstream.hits["drop"] == 2  # the first attempt and one retry
        called = await http.post("/proxy/drop/mcp", content=call(4), headers=headers(acme_key[1]))
        assert called.status_code == 502
        assert upstream.hits["drop"] == 3  # no retry for a call
    await sync_to_async(connections.close_all)()
