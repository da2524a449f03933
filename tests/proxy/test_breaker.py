"""The circuit breaker's states without sockets: two proxy "processes" (two Breakers) sharing
one in-process hot state, as two web processes share Redis. Transitions reach the other
process the way they do in production: through the flag-change subscription."""

from __future__ import annotations

import json

import pytest

from governance.events import AUDIT_STREAM
from governance.runtime import flags
from governance.runtime.hotstate import MemoryHotState
from proxy.audit import AuditRecorder
from proxy.breaker import Breakers, Refusal
from proxy.runtime import ServerConfig

SERVER = ServerConfig("srv-1", "org-1", "files", "http://127.0.0.1:9/mcp", None, 1.0, 1.0, True)
BOOM = "The upstream server did not answer within 1 s."


def process_breakers(hotstate: MemoryHotState) -> Breakers:
    """One proxy process's breakers over the shared hot state, recording to its stream."""
    recorder = AuditRecorder(embedded=False, hotstate=lambda: hotstate)
    return Breakers(recorder, lambda: hotstate)


@pytest.fixture
def hotstate() -> MemoryHotState:
    return MemoryHotState()


@pytest.fixture
def breaker_settings(settings):
    settings.IGRIS_BREAKER_FAILURES = 3
    settings.IGRIS_BREAKER_COOLDOWN_S = 0  # the cool-down is over at once: no sleeping here
    return settings


async def _fail(breakers: Breakers, times: int, *, trial: bool = False) -> None:
    for _ in range(times):
        await breakers.settle(SERVER, trial=trial, error=BOOM)


async def _next_transition(changes) -> tuple[str, str | None]:
    """The next circuit flag change, as proxy.runtime routes them (trial claims are not)."""
    async for key, value in changes:
        if key.startswith("circuit:"):
            return key, value
    raise AssertionError("the subscription ended")


async def _circuit_events(hotstate: MemoryHotState) -> list[dict]:
    entries = await hotstate.stream_range(AUDIT_STREAM)
    events = [json.loads(fields["event"]) for _, fields in entries]
    return [e["data"] for e in events if e["type"] == "upstream_circuit"]


async def test_successes_reset_the_count_and_only_consecutive_failures_open(
    hotstate, breaker_settings
):
    breakers = process_breakers(hotstate)
    await _fail(breakers, 2)
    await breakers.settle(SERVER, trial=False, error=None)
    await _fail(breakers, 2)
    assert breakers.state(SERVER.id) == "closed"
    assert await hotstate.get_flag(flags.circuit(SERVER.id)) is None  # nothing published yet
    await _fail(breakers, 1)
    assert breakers.state(SERVER.id) == "open"
    published = flags.parse_circuit(await hotstate.get_flag(flags.circuit(SERVER.id)))
    assert (published.state, published.failures, published.last_error) == ("open", 3, BOOM)
    [event] = await _circuit_events(hotstate)
    assert event["state"] == "open" and event["server_slug"] == "files"


async def test_a_failure_count_of_zero_turns_the_breaker_off(hotstate, breaker_settings):
    breaker_settings.IGRIS_BREAKER_FAILURES = 0
    breakers = process_breakers(hotstate)
    await _fail(breakers, 50)
    assert await breakers.admit(SERVER) is False


async def test_one_trial_across_processes_and_its_failure_opens_again(hotstate, breaker_settings):
    one, two = process_breakers(hotstate), process_breakers(hotstate)
    async with hotstate.subscribe_flags() as changes:
        await _fail(one, 3)
        two.on_flag(*await _next_transition(changes))
        assert two.state(SERVER.id) == "open"
        assert await one.admit(SERVER) is True  # cool-down over: the trial
        assert isinstance(await one.admit(SERVER), Refusal)  # one trial at a time here...
        assert isinstance(await two.admit(SERVER), Refusal)  # ...and everywhere
        two.on_flag(*await _next_transition(changes))  # half-open, published by one
        assert two.state(SERVER.id) == "half_open"
        await _fail(one, 1, trial=True)
        await one.finish_trial(SERVER)
        assert one.state(SERVER.id) == "open"
        assert await hotstate.get_flag(flags.circuit_trial(SERVER.id)) is None  # released
    events = await _circuit_events(hotstate)
    assert [(e["state"], e["reopened"]) for e in events] == [("open", False), ("open", True)]


async def test_a_trial_success_closes_the_circuit_in_every_process(hotstate, breaker_settings):
    one, two = process_breakers(hotstate), process_breakers(hotstate)
    async with hotstate.subscribe_flags() as changes:
        await _fail(one, 3)
        two.on_flag(*await _next_transition(changes))
        assert await one.admit(SERVER) is True
        await one.settle(SERVER, trial=True, error=None)
        await one.finish_trial(SERVER)
        for _ in range(2):  # half-open, then closed
            two.on_flag(*await _next_transition(changes))
    assert one.state(SERVER.id) == two.state(SERVER.id) == "closed"
    assert await two.admit(SERVER) is False
    events = await _circuit_events(hotstate)
    assert [e["state"] for e in events] == ["open", "closed"]


async def test_a_trial_without_an_outcome_hands_the_trial_to_the_next_call(
    hotstate, breaker_settings
):
    breakers = process_breakers(hotstate)
    await _fail(breakers, 3)
    assert await breakers.admit(SERVER) is True
    await breakers.finish_trial(SERVER)  # the client left before any answer
    assert await hotstate.get_flag(flags.circuit_trial(SERVER.id)) is None
    assert await breakers.admit(SERVER) is True


async def test_a_reset_closes_an_open_circuit_at_once(hotstate, breaker_settings):
    breaker_settings.IGRIS_BREAKER_COOLDOWN_S = 60
    breakers = process_breakers(hotstate)
    await _fail(breakers, 3)
    refusal = await breakers.admit(SERVER)
    assert isinstance(refusal, Refusal) and 59 <= refusal.retry_after_s <= 60
    assert refusal.retry_after == 60 and refusal.last_error == BOOM
    breakers.on_flag(flags.circuit(SERVER.id), None)  # what server_circuit_reset publishes
    assert await breakers.admit(SERVER) is False


def test_a_garbled_circuit_flag_reads_as_closed():
    assert flags.parse_circuit("not json").state == "closed"
    assert flags.parse_circuit('{"state": "melted"}').state == "closed"
    assert flags.parse_circuit('{"state": "open", "failures": "x"}').state == "closed"
