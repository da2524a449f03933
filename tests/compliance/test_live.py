"""The live feed on real sockets: /api/v1/events (SSE) and /ws/events, fed by the audit writer."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from contextlib import asynccontextmanager

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from compliance.audit.writer import drain_outbox, run_once
from compliance.models import ChainHead
from governance.events import Actor, Envelope
from governance.models import PendingEvent
from governance.runtime.hotstate import RedisHotState
from tests.conftest import login
from tests.support import serving

pytestmark = pytest.mark.django_db(transaction=True)

AGENT = Actor(kind="api_key", id=str(uuid.uuid4()), label="acme agents")


# --- the stack: igris on a socket, the audit writer run by the test ----------------------------


@pytest.fixture
def igris(transactional_db, settings):
    """igris' whole ASGI application on a real socket: 'host:port'."""
    from governance import keys
    from igris_project.asgi import application

    settings.IGRIS_LIVE_HEARTBEAT_S = 30
    keys.reset()
    with serving(application) as port:
        yield f"127.0.0.1:{port}"
    keys.reset()


@pytest.fixture(autouse=True)
async def _close_connections():
    """The ORM calls of a test run in asgiref's thread: close its connections after the test."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def hs(settings):
    """The test's own hot state (the process-wide one belongs to the server's loop)."""
    hotstate = RedisHotState(settings.REDIS_URL, settings.IGRIS_HOTSTATE_PREFIX)
    yield hotstate
    await hotstate.close()


def _pending(org, type_: str, data: dict, actor: Actor = AGENT) -> None:
    envelope = Envelope(org_id=str(org.id), type=type_, source="proxy", actor=actor, data=data)
    PendingEvent.objects.create(org_id=org.id, payload=envelope.as_dict())


async def write(hs, org, *events: tuple[str, dict]) -> None:
    """Record events through the outbox and run the audit writer once (store, then publish)."""

    def record() -> None:
        for type_, data in events:
            _pending(org, type_, data)

    await sync_to_async(record)()
    await run_once(hotstate=hs)


def calls(n: int, **data) -> list[tuple[str, dict]]:
    return [("tool_call", {"tool": f"tool_{i}", "method": "tools/call", **data}) for i in range(n)]


async def head(org) -> int:
    return await sync_to_async(
        lambda: ChainHead.objects.filter(org_id=org.id).values_list("seq", flat=True).first() or 0
    )()


@pytest.fixture
def read_key(acme, alice):
    from governance.services.api_keys import api_key_create

    return api_key_create(org=acme, actor=alice, name="watcher", scopes=["read"])[1]


@pytest.fixture
def globex_read_key(globex, charlie):
    from governance.services.api_keys import api_key_create

    return api_key_create(org=globex, actor=charlie, name="watcher", scopes=["read"])[1]


# --- an SSE client --------------------------------------------------------------------------------


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def block(self, timeout: float = 10.0) -> dict | None:
        """The next SSE block as {field: value, "comments": [...]}; None at the end."""
        fields: dict = {}
        comments: list[str] = []
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if fields or comments:
                        return {**fields, "comments": comments}
                    continue
                if line.startswith(":"):
                    comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        return None

    async def events(self, n: int, timeout: float = 10.0) -> list[dict]:
        """The next n events (retry and heartbeat blocks skipped), data parsed."""
        out: list[dict] = []
        while len(out) < n:
            block = await self.block(timeout)
            assert block is not None, f"the stream ended after {len(out)} of {n} events"
            if "data" in block:
                out.append({**block, "data": json.loads(block["data"])})
        return out


@asynccontextmanager
async def sse(base: str, key: str | None, *, params: dict | None = None, headers=None):
    sent = {"Accept": "text/event-stream", **(headers or {})}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    timeout = httpx.Timeout(10.0, read=None)
    async with (
        httpx.AsyncClient(timeout=timeout, trust_env=False) as client,
        client.stream("GET", f"http://{base}/api/v1/events", params=params, headers=sent) as r,
    ):
        yield Stream(r)


async def connected(stream: Stream) -> None:
    """The first block is the reconnection delay: the subscription is in place from here on."""
    first = await stream.block()
    assert first is not None and first["retry"] == "2000"


# --- order, resumption, tenancy -------------------------------------------------------------------


async def test_events_arrive_in_seq_order_with_their_id_and_kind(igris, hs, acme, read_key):
    await run_once(hotstate=hs)  # the cast's own audit events (org created, key created)
    start = await head(acme)
    async with sse(igris, read_key) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        await connected(stream)
        await write(hs, acme, *calls(12, server_slug="github"))
        await write(hs, acme, *calls(8, server_slug="github"))
        events = await stream.events(20)

    assert [int(e["id"]) for e in events] == list(range(start + 1, start + 21))
    assert {e["event"] for e in events} == {"tool_call"}
    for event in events:
        data = event["data"]
        assert data["seq"] == int(event["id"])
        assert (data["event"], data["type"], data["org_id"]) == (
            "tool_call",
            "tool_call",
            str(acme.id),
        )
        assert data["data"]["server_slug"] == "github"
        assert len(data["hash"]) == 64
    assert [e["data"]["data"]["tool"] for e in events] == [f"tool_{i}" for i in range(12)] + [
        f"tool_{i}" for i in range(8)
    ]


@pytest.mark.parametrize("resume", ["last-event-id", "since"])
async def test_a_reconnecting_client_misses_nothing_and_gets_nothing_twice(
    igris, hs, acme, read_key, resume
):
    await run_once(hotstate=hs)
    async with sse(igris, read_key) as stream:
        await connected(stream)
        await write(hs, acme, *calls(10))
        seen = await stream.events(5)
    last = int(seen[-1]["id"])

    async def keep_writing() -> None:
        for _ in range(15):
            await write(hs, acme, *calls(2))
            await asyncio.sleep(0.02)

    producer = asyncio.create_task(keep_writing())
    await asyncio.sleep(0.05)  # reconnect while events keep arriving
    resumed = {"headers": {"Last-Event-ID": str(last)}} if resume == "last-event-id" else {}
    params = {"since": str(last)} if resume == "since" else None
    async with sse(igris, read_key, params=params, **resumed) as stream:
        await producer
        final = await head(acme)
        events = await stream.events(final - last)
        ids = [int(e["id"]) for e in events]
        # The stream is live after its replay.
        await write(hs, acme, ("tool_call", {"tool": "after", "method": "tools/call"}))
        [after] = await stream.events(1)

    assert ids == list(range(last + 1, final + 1))
    assert int(after["id"]) == final + 1


async def test_a_gap_in_the_published_events_is_filled_from_the_table(igris, hs, acme, read_key):
    """Pub/sub is at most once: events stored but never published still reach the feed."""
    await run_once(hotstate=hs)
    start = await head(acme)
    async with sse(igris, read_key) as stream:
        await connected(stream)

        def stored_unpublished() -> None:
            for type_, data in calls(3):
                _pending(acme, type_, data)
            drain_outbox()  # stores without publishing

        await sync_to_async(stored_unpublished)()
        await write(hs, acme, ("policy.published", {"version": 2}))
        events = await stream.events(4)

    assert [int(e["id"]) for e in events] == list(range(start + 1, start + 5))
    assert [e["event"] for e in events] == ["tool_call"] * 3 + ["policy_change"]


async def test_globex_never_sees_acme_events(igris, hs, acme, globex, read_key, globex_read_key):
    await write(hs, acme, *calls(3))  # acme history a globex replay must not show
    globex_history = await head(globex)  # globex's own: org created, key created
    async with (
        sse(igris, globex_read_key, params={"since": "0"}) as globex_stream,
        sse(igris, read_key) as acme_stream,
    ):
        await connected(globex_stream)
        await connected(acme_stream)
        history = await globex_stream.events(globex_history)
        await write(hs, acme, *calls(5))
        await write(hs, globex, ("session.killed", {"session_id": "g-1"}))
        [live] = await globex_stream.events(1)
        acme_events = await acme_stream.events(5)

    assert {e["data"]["org_id"] for e in [*history, live]} == {str(globex.id)}
    assert (live["event"], live["data"]["type"]) == ("session_update", "session.killed")
    assert {e["data"]["org_id"] for e in acme_events} == {str(acme.id)}


# --- filters --------------------------------------------------------------------------------------

MIXED = [
    ("tool_call", {"tool": "search", "server_slug": "github", "session_id": "s1"}),
    ("mcp_request", {"method": "resources/read", "server_slug": "drive", "session_id": "s2"}),
    ("anomaly", {"kind": "rate_spike", "server_slug": "github", "session_id": "s1"}),
    ("session.killed", {"session_id": "s1"}),
    ("policy.published", {"version": 3}),
    ("api_key.created", {"name": "ci"}),
    ("anomaly.resolved", {"anomaly_id": 7}),
]

FILTERS = [
    ({}, [t for t, _ in MIXED]),
    ({"types": "anomaly,policy_change"}, ["anomaly", "policy.published", "anomaly.resolved"]),
    ({"types": "tool_call"}, ["tool_call", "mcp_request"]),
    ({"types": "session_update,api_key.created"}, ["session.killed", "api_key.created"]),
    ({"server": "github"}, ["tool_call", "anomaly"]),
    ({"session": "s1"}, ["tool_call", "anomaly", "session.killed"]),
    ({"types": "tool_call", "session": "s2"}, ["mcp_request"]),
]


@pytest.mark.parametrize(("params", "expected"), FILTERS)
async def test_filters_select_the_same_events_live_and_on_replay(
    igris, hs, acme, read_key, params, expected
):
    await run_once(hotstate=hs)
    start = await head(acme)
    async with sse(igris, read_key, params=params) as live:
        await connected(live)
        await write(hs, acme, *MIXED)
        await write(
            hs, acme, ("tool_call", {"tool": "marker", "server_slug": "github", "session_id": "s2"})
        )
        got_live = await live.events(len(expected))
    async with sse(igris, read_key, params={**params, "since": str(start)}) as replay:
        got_replay = await replay.events(len(expected))

    assert [e["data"]["type"] for e in got_live] == expected
    assert [e["data"]["type"] for e in got_replay] == expected
    assert [e["id"] for e in got_live] == [e["id"] for e in got_replay]


# --- heartbeat, slow consumers, authentication ---------------------------------------------------


async def test_an_idle_stream_gets_heartbeats(igris, settings, read_key):
    settings.IGRIS_LIVE_HEARTBEAT_S = 0.2
    async with sse(igris, read_key) as stream:
        await connected(stream)
        blocks = [await stream.block(timeout=3) for _ in range(2)]
    assert [b["comments"] for b in blocks] == [["heartbeat"], ["heartbeat"]]


async def test_a_revoked_key_loses_its_feed(igris, settings, acme, alice):
    from governance.services.api_keys import api_key_create, api_key_revoke

    settings.IGRIS_LIVE_HEARTBEAT_S = 0.2
    key, token = await sync_to_async(api_key_create)(
        org=acme, actor=alice, name="soon revoked", scopes=["read"]
    )
    async with sse(igris, token) as stream:
        await connected(stream)
        await sync_to_async(api_key_revoke)(org=acme, actor=alice, key=key)
        ended = False
        for _ in range(50):
            if await stream.block(timeout=5) is None:
                ended = True
                break
    assert ended


async def _never_taken(message: dict) -> None:
    """An ASGI send whose client never takes the data: it waits for the transport to drain."""
    await asyncio.Event().wait()


async def test_a_send_the_client_does_not_take_times_out_and_later_sends_go_on():
    from compliance.live import SendClock

    sent: list[dict] = []

    async def taken(message: dict) -> None:
        sent.append(message)

    clock = SendClock(heartbeat_s=30, timeout_s=0.05)
    await clock.send(taken, {"n": 1})
    with pytest.raises(TimeoutError):
        await clock.send(_never_taken, {"n": 2})
    # The timeout's own cancellation is withdrawn, as asyncio.timeout does: later sends go on and
    # an outer asyncio.timeout or TaskGroup does not take the task for a cancelled one.
    assert asyncio.current_task().cancelling() == 0
    await clock.send(taken, {"n": 3})
    clock.stop()
    assert sent == [{"n": 1}, {"n": 3}]


async def test_a_send_cancelled_from_outside_stays_cancelled():
    from compliance.live import SendClock

    clock = SendClock(heartbeat_s=30, timeout_s=30)
    sending = asyncio.create_task(clock.send(_never_taken, {}))
    await asyncio.sleep(0.05)
    sending.cancel()  # the client left: not a timeout
    with pytest.raises(asyncio.CancelledError):
        await sending
    clock.stop()


async def test_the_send_clock_asks_for_heartbeats_until_stopped():
    from compliance.live import SendClock

    beats: asyncio.Queue[None] = asyncio.Queue()
    clock = SendClock(heartbeat_s=0.05, timeout_s=30)
    clock.heartbeats(lambda: beats.put_nowait(None))
    for _ in range(2):
        await asyncio.wait_for(beats.get(), 10)
    clock.stop()
    left = beats.qsize()
    await asyncio.sleep(0.3)
    assert beats.qsize() == left


def _dechunk(raw: bytes) -> bytes:
    """An HTTP/1.1 chunked body as bytes."""
    out, rest = b"", raw
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def test_a_slow_consumer_gets_an_overflow_event_and_is_closed(
    igris, settings, hs, acme, read_key
):
    settings.IGRIS_LIVE_QUEUE_LIMIT = 20
    settings.IGRIS_LIVE_SEND_TIMEOUT_S = 20
    await run_once(hotstate=hs)
    start = await head(acme)
    host, port = igris.split(":")
    # A client that reads nothing, with a small receive window: the server's sends block.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    request = (
        f"GET /api/v1/events HTTP/1.1\r\nHost: {igris}\r\nAuthorization: Bearer {read_key}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    await asyncio.sleep(0.3)  # subscribed
    padding = "x" * 64 * 1024
    for _ in range(4):
        await write(hs, acme, *calls(50, padding=padding))
    await asyncio.sleep(1.0)

    received = b""
    async with asyncio.timeout(60):
        while chunk := await loop.sock_recv(sock, 1 << 20):
            received += chunk
    sock.close()

    headers, _, body = received.partition(b"\r\n\r\n")
    assert b" 200 " in headers.split(b"\r\n")[0]
    blocks = [b for b in _dechunk(body).decode().split("\n\n") if b.strip()]
    events = [dict(line.split(": ", 1) for line in b.split("\n")) for b in blocks[1:]]
    last = events[-1]
    assert last["event"] == "overflow"
    delivered = [int(e["id"]) for e in events[:-1]]
    assert delivered == list(range(start + 1, start + 1 + len(delivered)))
    assert len(delivered) < 200
    assert json.loads(last["data"]) == {
        "reason": "slow consumer",
        "last_seq": delivered[-1] if delivered else start,
    }


async def test_keys_are_checked_before_anything_is_sent(igris, acme, alice, read_key):
    from governance.services.api_keys import api_key_create

    _, proxy_only = await sync_to_async(api_key_create)(
        org=acme, actor=alice, name="agent", scopes=["proxy"]
    )
    async with httpx.AsyncClient(trust_env=False) as client:
        url = f"http://{igris}/api/v1/events"
        anonymous = await client.get(url)
        in_url = await client.get(url, params={"token": read_key})
        wrong_scope = await client.get(url, headers={"Authorization": f"Bearer {proxy_only}"})
        bad_since = await client.get(
            url, headers={"Authorization": f"Bearer {read_key}", "Last-Event-ID": "abc"}
        )
        post = await client.post(url, headers={"Authorization": f"Bearer {read_key}"})

    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="igris"'
    assert (anonymous.json()["code"], anonymous.json()["reason"]) == ("unauthenticated", "missing")
    assert in_url.status_code == 401  # a key in the URL is never read
    assert wrong_scope.status_code == 403
    assert (wrong_scope.json()["code"], wrong_scope.json()["reason"]) == (
        "permission_denied",
        "scope",
    )
    assert bad_since.status_code == 400
    assert (post.status_code, post.headers["allow"]) == (405, "GET")


async def _until(condition, what: str, timeout: float = 15.0) -> None:
    """Wait for `condition()`; fail only if it never holds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def test_a_client_that_leaves_frees_its_place_in_the_fan_out(igris, acme, read_key):
    """The consumers run the stream in a task of their own: a client's disconnect must end it,
    or the connection would hold the organisation's subscription until a send failed."""
    from compliance.live.fanout import open_feeds

    org = str(acme.id)
    auth = {"Authorization": f"Bearer {read_key}"}
    async with (
        sse(igris, read_key) as stream,
        ws_connect(ws_url(igris), additional_headers=auth, proxy=None),
    ):
        await connected(stream)
        await _until(lambda: open_feeds(org) == 2, "both connections followed")
    await _until(lambda: open_feeds(org) == 0, "both connections left the hub")
    assert open_feeds(org) == 0


def test_channels_routes_the_feed_to_its_consumers_and_the_rest_to_django():
    from compliance.live.consumers import EventSocketConsumer, EventStreamConsumer
    from igris_project.asgi import django_asgi, router

    def target(protocol: str, path: str):
        for route in router.application_mapping[protocol].routes:
            if route.pattern.match(path):
                return getattr(route.callback, "consumer_class", route.callback)
        return None

    assert target("http", "api/v1/events") is EventStreamConsumer
    assert target("http", "api/v1/events/") is EventStreamConsumer
    assert target("http", "api/v1/events/extra") is django_asgi
    assert target("http", "api/v1/audit-events/") is django_asgi
    assert target("websocket", "ws/events") is EventSocketConsumer
    assert target("websocket", "ws/events/") is EventSocketConsumer
    assert target("websocket", "ws/other") is None


def test_a_types_filter_naming_no_possible_event_type_is_refused_naming_it():
    from compliance.live.request import Problem, parameters

    with pytest.raises(Problem) as refused:
        parameters({"query_string": b"types=anomaly,../../etc"}, {})
    assert (refused.value.status, refused.value.code) == (400, "invalid")
    assert '"../../etc"' in refused.value.detail
    feed, _ = parameters({"query_string": b"types=tool_call,vendor:gateway.call-1"}, {})
    # tool_call asks for every proxied call, the other methods' mcp_request events included.
    assert feed.kinds == frozenset({"tool_call", "mcp_request", "vendor:gateway.call-1"})


# --- websocket ------------------------------------------------------------------------------------


def ws_url(base: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"ws://{base}/ws/events" + (f"?{query}" if query else "")


async def test_the_websocket_sends_the_same_payloads_as_sse(igris, hs, acme, read_key):
    await run_once(hotstate=hs)
    start = await head(acme)
    auth = {"Authorization": f"Bearer {read_key}"}
    async with (
        ws_connect(ws_url(igris), additional_headers=auth, proxy=None) as websocket,
        sse(igris, read_key) as stream,
    ):
        await connected(stream)
        await asyncio.sleep(0.2)  # the websocket's subscription too
        await write(hs, acme, *MIXED)
        over_ws = [json.loads(await asyncio.wait_for(websocket.recv(), 10)) for _ in MIXED]
        over_sse = [e["data"] for e in await stream.events(len(MIXED))]

    assert over_ws == over_sse
    assert [m["seq"] for m in over_ws] == list(range(start + 1, start + 1 + len(MIXED)))
    # A live event is named like its audit row (tools/list travels as mcp_request).
    assert [m["event"] for m in over_ws] == [
        "tool_call",
        "mcp_request",
        "anomaly",
        "session_update",
        "policy_change",
        "api_key.created",
        "anomaly",
    ]


async def test_the_websocket_resumes_and_filters(igris, hs, acme, read_key):
    await run_once(hotstate=hs)
    start = await head(acme)
    await write(hs, acme, *MIXED)
    url = ws_url(igris, since=str(start), types="anomaly")
    auth = {"Authorization": f"Bearer {read_key}"}
    async with ws_connect(url, additional_headers=auth, proxy=None) as websocket:
        replayed = [json.loads(await asyncio.wait_for(websocket.recv(), 10)) for _ in range(2)]
        await write(hs, acme, ("anomaly", {"kind": "tool_drift"}), *calls(2))
        live = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    assert [m["type"] for m in replayed] == ["anomaly", "anomaly.resolved"]
    assert (live["type"], live["data"]["kind"]) == ("anomaly", "tool_drift")


async def test_the_websocket_takes_the_console_session_from_this_site_only(
    igris, hs, acme, alice, client
):
    await sync_to_async(login)(client, alice)
    cookie = f"igris.session_token={client.cookies['igris.session_token'].value}"
    same_site = f"http://{igris}"
    async with ws_connect(
        ws_url(igris), additional_headers={"Cookie": cookie}, origin=same_site, proxy=None
    ) as websocket:
        await asyncio.sleep(0.2)
        await write(hs, acme, *calls(1))
        message = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    assert message["org_id"] == str(acme.id)

    with pytest.raises(InvalidStatus) as cross_site:
        async with ws_connect(
            ws_url(igris),
            additional_headers={"Cookie": cookie},
            origin="https://evil.example",
            proxy=None,
        ):
            pass
    assert cross_site.value.response.status_code == 403
    assert json.loads(cross_site.value.response.body)["reason"] == "origin"

    with pytest.raises(InvalidStatus) as anonymous:
        async with ws_connect(ws_url(igris), origin=same_site, proxy=None):
            pass
    assert anonymous.value.response.status_code == 401


async def test_the_websocket_refuses_a_key_without_the_read_scope(igris, acme, alice):
    from governance.services.api_keys import api_key_create

    _, proxy_only = await sync_to_async(api_key_create)(
        org=acme, actor=alice, name="agent", scopes=["proxy"]
    )
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(
            ws_url(igris), additional_headers={"Authorization": f"Bearer {proxy_only}"}, proxy=None
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_the_websocket_never_carries_another_organisations_events(
    igris, hs, acme, globex, charlie, client, globex_read_key
):
    """By key and by console session: charlie's sockets get globex's events only, live and on
    replay from 0, while acme's events are written in between."""
    await write(hs, acme, *calls(2))
    await sync_to_async(login)(client, charlie)
    cookie = f"igris.session_token={client.cookies['igris.session_token'].value}"
    async with (
        ws_connect(
            ws_url(igris, since="0"),
            additional_headers={"Authorization": f"Bearer {globex_read_key}"},
            proxy=None,
        ) as by_key,
        ws_connect(
            ws_url(igris),
            additional_headers={"Cookie": cookie},
            origin=f"http://{igris}",
            proxy=None,
        ) as by_cookie,
    ):
        history = [
            json.loads(await asyncio.wait_for(by_key.recv(), 10)) for _ in range(await head(globex))
        ]
        await asyncio.sleep(0.2)
        await write(hs, acme, *calls(3))
        await write(hs, globex, ("session.killed", {"session_id": "g-1"}))
        live_key = json.loads(await asyncio.wait_for(by_key.recv(), 10))
        live_cookie = json.loads(await asyncio.wait_for(by_cookie.recv(), 10))
    assert {m["org_id"] for m in [*history, live_key, live_cookie]} == {str(globex.id)}
    assert live_key["type"] == live_cookie["type"] == "session.killed"
