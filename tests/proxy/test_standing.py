"""Stops survive the hot state losing its data (a Redis restarted empty, or the embedded default
restarted): they are restored from the database before the next request is admitted."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from governance.runtime import flags
from governance.runtime.standing import EPOCH_FLAG, standing_flags
from tests.conftest import wipe_hot_state
from tests.proxy.test_kill_switch import _post_call, _session_of
from tests.proxy.test_proxy_e2e import _publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def _status(http, key: str) -> int:
    return (await _post_call(http, key, "echo", {"text": "x"})).status_code


@pytest.mark.parametrize("scope", ["key", "server", "org", "session"])
async def test_a_stop_survives_an_empty_hot_state(
    igris_url, demo_server, acme, alice, acme_key, scope
):
    from governance.services.sessions import (
        kill_lift,
        org_emergency_stop,
        session_kill,
        sessions_kill_for_key,
        sessions_kill_for_server,
    )

    await _publish(acme, alice, [], posture="allow")
    key, plain = acme_key
    async with httpx.AsyncClient(base_url=igris_url, timeout=10) as http:
        assert await _status(http, plain) == 200
        if scope == "key":
            stop = sessions_kill_for_key
            kwargs = {"key": key}
        elif scope == "server":
            stop, kwargs = sessions_kill_for_server, {"server": demo_server}
        elif scope == "org":
            stop, kwargs = org_emergency_stop, {}
        else:
            stop = session_kill
            kwargs = {"session": await _session_of(key.id)}
        await sync_to_async(stop)(org=acme, actor=alice, reason="incident 42", **kwargs)
        if scope == "session":
            # A killed 2026-07-28-era session is over: the agent's next call opens a new one,
            # and an empty hot state must not bring the killed one back.
            killed = kwargs["session"].id
            after = await _post_call(http, plain, "echo", {"text": "a new session"})
            assert after.status_code == 200 and after.headers["igris-session-id"] != killed
            await sync_to_async(wipe_hot_state)()
            answer = await _post_call(http, plain, "echo", {"text": "after the reset"})
            assert answer.status_code == 200, answer.text
            assert answer.headers["igris-session-id"] == after.headers["igris-session-id"]
            await sync_to_async(connections.close_all)()
            return
        assert await _status(http, plain) == 403

        await sync_to_async(wipe_hot_state)()
        answer = await _post_call(http, plain, "echo", {"text": "after the reset"})
        assert answer.status_code == 403, answer.text
        assert "incident 42" in answer.json()["error"]["message"]

        # A key, server or organisation stop can be lifted.
        target = {"key": key.id, "server": demo_server.id, "org": None}[scope]
        await sync_to_async(kill_lift)(org=acme, actor=alice, scope=scope, target_id=target)
        await sync_to_async(wipe_hot_state)()
        assert await _status(http, plain) == 200
    await sync_to_async(connections.close_all)()


def test_standing_flags_hold_stops_until_lifted(acme, alice, globex, charlie, acme_key):
    from governance.models import AgentSession
    from governance.services.sessions import (
        kill_lift,
        org_emergency_stop,
        session_resume,
        session_suspend,
        sessions_kill_for_key,
    )

    key, _ = acme_key
    sessions_kill_for_key(org=acme, actor=alice, key=key, reason="leaked")
    org_emergency_stop(org=globex, actor=charlie, reason="drill")
    session = AgentSession.objects.create(id="s-1", org=acme, server_slug="x", era="modern")
    session_suspend(org=acme, actor=alice, session=session, reason="look")
    assert standing_flags() == {
        flags.kill_key(key.id): "killed:leaked",
        flags.kill_org(globex.id): "killed:drill",
        flags.kill_session("s-1"): "suspended:look",
    }
    kill_lift(org=acme, actor=alice, scope="key", target_id=key.id)
    kill_lift(org=globex, actor=charlie, scope="org")
    session_resume(org=acme, actor=alice, session=session)
    assert standing_flags() == {}
    assert EPOCH_FLAG not in standing_flags()
