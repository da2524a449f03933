"""Redis restarted under load: while it is down the proxy fails closed (a JSON-RPC error at once,
nothing forwarded that was not recorded); once it is back, empty, the proxy and the audit writer
recover by themselves, without a restart of either process.

The proxy and the writer run as real processes against a private redis-server on a free port,
started and killed here. The upstream is the demo MCP server behind a tap that notes every
tools/call it receives.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from compliance.audit.verify import verify_chain
from compliance.models import AuditEvent
from governance.runtime import flags
from governance.runtime.hotstate import HotStateUnavailable, RedisHotState
from igris_project.demo.upstream import build_demo_app
from proxy import jsonrpc
from tests.conftest import free_port
from tests.proxy.test_kill_switch import _post_call
from tests.proxy.test_multiprocess import audit_writer_process, igris_env, igris_process
from tests.proxy.test_proxy_e2e import _publish
from tests.proxy.test_streams import _legacy_session
from tests.support import serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(240)]

CLIENTS = 6
ANSWER_TIMEOUT_S = 15.0
RECOVERY_BOUND_S = 30.0
NO_ADD_TEXT = "no adding during the drill"
NO_ADD = [{"id": "no-add", "action": "deny", "message": NO_ADD_TEXT, "match": {"tools": ["add"]}}]


class PrivateRedis:
    """A redis-server of this test's own on a fixed free port; no persistence, so a restart
    comes back empty. Always killed at the end."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert self.proc.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.kill()


class CountingUpstream:
    """The demo upstream behind a tap that notes the text of every tools/call that reaches it."""

    def __init__(self) -> None:
        self.app = build_demo_app()
        self.calls: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        message = json.loads(body) if body else {}
        if isinstance(message, dict) and message.get("method") == "tools/call":
            params = message["params"]
            self.calls.append(params["arguments"].get("text") or params["name"])
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@contextmanager
def audit_writer(redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with audit_writer_process("--batch", "200", env=igris_env(REDIS_URL=redis_url)) as proc:
        yield proc


@dataclass
class Outcome:
    text: str
    sent: float
    took: float
    status: int | None
    code: int | None = None
    message: str = ""


@dataclass
class Load:
    """Concurrent clients calling echo with unique texts until stopped; every answer is kept."""

    base: str
    token: str
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=ANSWER_TIMEOUT_S) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                text = f"c{n}-{i}"
                sent = time.monotonic()
                try:
                    answer = await _post_call(http, self.token, "echo", {"text": text}, id=i)
                except httpx.HTTPError:
                    self.outcomes.append(Outcome(text, sent, time.monotonic() - sent, None))
                    await asyncio.sleep(0.05)
                    continue
                outcome = Outcome(text, sent, time.monotonic() - sent, answer.status_code)
                body = answer.json()
                if answer.status_code == 200:
                    assert body["result"]["content"][0]["text"] == text
                else:
                    outcome.code, outcome.message = body["error"]["code"], body["error"]["message"]
                    await asyncio.sleep(0.02)  # a failing client does not spin
                self.outcomes.append(outcome)

    def ok(self, *, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200 and o.sent >= since]

    async def until(self, predicate: Any, *, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"{what}: not within {within} s"
            await asyncio.sleep(0.05)


async def _legacy_echo(http: httpx.AsyncClient, headers: dict[str, str], text: str) -> Any:
    return await http.post(
        "/proxy/demo/mcp",
        headers=headers,
        json={
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}},
        },
    )


async def _add(http: httpx.AsyncClient, token: str) -> Any:
    """Whether the proxy lets `add` through: its result, or the denial's text."""
    answer = await _post_call(http, token, "add", {"a": 1, "b": 2})
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    return ("denied" if result.get("isError") else "allowed"), result["content"][0]["text"]


def _stored_texts(org_id: Any) -> set[str]:
    return {
        (arguments or {}).get("text")
        for arguments in AuditEvent.objects.filter(org_id=org_id, type="tool_call").values_list(
            "arguments", flat=True
        )
    }


def _subscribers(url: str) -> int:
    """Connections subscribed to the flag channel (the igris process's listeners)."""
    client = redis.Redis.from_url(url)
    try:
        channel = f"{settings.IGRIS_HOTSTATE_PREFIX}{RedisHotState.FLAG_CHANNEL}"
        return int(client.pubsub_numsub(channel)[0][1])
    finally:
        client.close()


async def _announce_policy(url: str, org_id: Any) -> None:
    """What policy_publish announces, sent to the proxy's Redis."""
    hotstate = RedisHotState(url, prefix=settings.IGRIS_HOTSTATE_PREFIX)
    try:
        await hotstate.set_flag(flags.policy_changed(org_id), "drill", ttl_s=60)
    finally:
        await hotstate.close()


def _first_stored_after(org_id: Any, wall: float) -> float:
    from datetime import UTC, datetime

    since = datetime.fromtimestamp(wall, UTC)
    first = (
        AuditEvent.objects.filter(org_id=org_id, type="tool_call", ts__gte=since)
        .order_by("recorded_at")
        .values_list("recorded_at", flat=True)
        .first()
    )
    assert first is not None
    return first.timestamp() - wall


async def test_a_subscription_that_lost_its_connection_ends_instead_of_missing_messages():
    with private_redis() as store:
        hotstate = RedisHotState(store.url, prefix="igris-drill:")
        try:
            async with hotstate.subscribe_flags() as changes:
                await hotstate.set_flag("one", "1")
                assert await anext(changes) == ("one", "1")
                # Back before redis-py gives up reconnecting: it would resubscribe silently, and
                # whatever was published in between would be lost without a sign.
                store.kill()
                store.start()
                await hotstate.set_flag("two", "2")
                with pytest.raises(HotStateUnavailable):
                    async with asyncio.timeout(10):
                        await anext(changes)
            async with hotstate.subscribe_flags() as changes:
                await hotstate.set_flag("three", "3")
                assert await anext(changes) == ("three", "3")
        finally:
            await hotstate.close()


async def test_the_proxy_fails_closed_while_redis_is_down_and_recovers_by_itself(
    acme, alice, acme_key
):
    from governance.services.servers import server_create

    await _publish(acme, alice, [], posture="allow")
    upstream = CountingUpstream()
    with serving(upstream) as upstream_port, private_redis() as store:
        await sync_to_async(server_create)(
            org=acme,
            actor=alice,
            name="Counted demo",
            slug="demo",
            upstream_url=f"http://127.0.0.1:{upstream_port}/mcp",
        )
        with (
            audit_writer(store.url) as writer,
            igris_process(
                REDIS_URL=store.url,
                IGRIS_KEY_RATE_PER_MIN="1000000",
                # Far beyond the waits below: a change shows only through the notifications.
                IGRIS_PROXY_CACHE_TTL_S="120",
            ) as base,
        ):
            load = Load(base, acme_key[1])
            clients = [asyncio.create_task(load.client(n)) for n in range(CLIENTS)]
            async with httpx.AsyncClient(base_url=base, timeout=ANSWER_TIMEOUT_S) as http:
                await load.until(lambda: len(load.ok()) >= 100, within=30, what="warm-up")
                legacy = await _legacy_session(http, acme_key[1])
                assert (await _legacy_echo(http, legacy, "legacy before")).status_code == 200
                assert (await _add(http, acme_key[1]))[0] == "allowed"

                store.kill()
                down_at = time.monotonic()
                await load.until(
                    lambda: len([o for o in load.outcomes if o.sent > down_at + 1]) >= 20,
                    within=ANSWER_TIMEOUT_S,
                    what="answers while Redis is down",
                )
                # Whatever was in flight when Redis died has ended by now: from here on, nothing
                # may reach the upstream.
                arrived = len(upstream.calls)
                await asyncio.sleep(1.5)
                assert len(upstream.calls) == arrived
                assert (await _legacy_echo(http, legacy, "legacy down")).status_code == 503
                # Published while Redis is down: the proxy never hears of it.
                await _publish(acme, alice, NO_ADD, posture="allow")

                store.start()
                up_at, up_wall = time.monotonic(), time.time()
                await load.until(
                    lambda: load.ok(since=up_at), within=RECOVERY_BOUND_S, what="recovery"
                )
                recovered_after = min(o.sent + o.took for o in load.ok(since=up_at)) - up_at
                # Notifications were missed: what the proxy cached during the outage is dropped
                # once its flag listener is subscribed again (within about a second), long before
                # the caches' TTL.
                deadline = time.monotonic() + 5
                while (verdict := await _add(http, acme_key[1]))[0] != "denied":
                    assert time.monotonic() < deadline, "a change made during the outage is unseen"
                    await asyncio.sleep(0.1)
                assert NO_ADD_TEXT in verdict[1]

                # The flag listener subscribes again by itself, and hears the next change.
                await load.until(
                    lambda: _subscribers(store.url) >= 1, within=10, what="resubscription"
                )
                await _publish(acme, alice, [], posture="allow")
                await _announce_policy(store.url, acme.id)
                deadline = time.monotonic() + 5
                while (await _add(http, acme_key[1]))[0] != "allowed":
                    assert time.monotonic() < deadline, "the policy change was not heard"
                    await asyncio.sleep(0.1)

                # The empty Redis lost the legacy session's binding: 404, as MCP asks, and the
                # client starts a new session (MCP 2025-11-25, Session Management, 4).
                lost = await _legacy_echo(http, legacy, "legacy after")
                assert lost.status_code == 404
                assert lost.json()["error"]["message"] == "Session not found."
                legacy = await _legacy_session(http, acme_key[1])
                assert (await _legacy_echo(http, legacy, "legacy again")).status_code == 200

                await load.until(
                    lambda: len(load.ok(since=up_at)) >= 100, within=30, what="calls after"
                )
                load.stop.set()
                await asyncio.wait_for(asyncio.gather(*clients), ANSWER_TIMEOUT_S + 5)

            # The writer, never restarted, stores what was recorded after Redis came back.
            after = {o.text for o in load.ok(since=up_at)} | {"legacy again"}
            deadline = time.monotonic() + RECOVERY_BOUND_S
            while not after <= await sync_to_async(_stored_texts)(acme.id):
                assert writer.poll() is None, "the audit writer exited"
                assert time.monotonic() < deadline, "the writer did not store the new events"
                await asyncio.sleep(0.2)

    outcomes = load.outcomes
    down = [o for o in outcomes if o.status != 200]
    assert [o for o in outcomes if o.status is None] == []  # every request was answered
    assert down and all(o.status == 503 and o.code == jsonrpc.AUDIT_UNAVAILABLE for o in down), {
        (o.status, o.code, o.message) for o in down
    }
    refused = {o.text for o in down if "state store" in o.message}
    withheld = {o.text for o in down if "audit log" in o.message}
    answered = {o.text for o in load.ok()}
    arrived = set(upstream.calls) - {"legacy before", "legacy again", "add"}
    # Refused at admission: never forwarded. Forwarded: answered (so recorded first), or caught
    # between admission and recording by the outage, in which case the result was withheld.
    assert not refused & arrived
    assert answered <= arrived <= answered | withheld
    assert "legacy down" not in upstream.calls and "legacy after" not in upstream.calls
    assert (await sync_to_async(verify_chain)(acme.id)).ok
    writer_back = await sync_to_async(_first_stored_after)(acme.id, up_wall)
    print(
        f"\nredis restart: {len(answered)} answered, {len(refused)} refused while down "
        f"(slowest {max(o.took for o in down):.2f} s), {len(withheld)} withheld in flight, "
        f"first success {recovered_after:.2f} s and first stored event {writer_back:.2f} s "
        "after Redis was back"
    )
    await sync_to_async(connections.close_all)()
