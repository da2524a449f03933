"""A call's audit event when the Redis stream cannot take it: the database outbox does, so a call
that already reached its upstream is recorded all the same, and chained by the writer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from compliance.audit.verify import verify_chain
from compliance.audit.writer import drain_outbox
from compliance.models import AuditEvent
from governance.events import Actor
from governance.models import PendingEvent
from governance.runtime.hotstate import RedisHotState
from proxy import audit
from tests.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_event_the_stream_cannot_take_goes_to_the_outbox_and_into_the_chain(acme):
    unreachable = RedisHotState(f"redis://127.0.0.1:{free_port()}/0", "igris-test-down:")
    event = audit.build_event(
        org_id=str(acme.id),
        type="tool_call",
        actor=Actor(kind="api_key", id=None, label="agent"),
        fields={"method": "tools/call", "tool": "echo", "result": "ok", "decision": "allow"},
    )
    try:
        await audit.record(unreachable, event, embedded=False)
    finally:
        await unreachable.close()

    def stored() -> list[str]:
        assert PendingEvent.objects.filter(payload__id=event["id"]).count() == 1
        drain_outbox()
        return [
            str(i)
            for i in AuditEvent.objects.filter(org_id=acme.id, type="tool_call").values_list(
                "id", flat=True
            )
        ]

    assert await sync_to_async(stored)() == [event["id"]]
    assert (await sync_to_async(verify_chain)(acme.id)).ok
    await sync_to_async(connections.close_all)()
