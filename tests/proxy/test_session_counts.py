"""Two processes flushing the counts of one session at the same moment: both counts land, even
when both find no row and race to create it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from governance.models import AgentSession
from proxy.sessions import _flush_one, _Pending

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_first_flushes_of_one_session_add_up(acme, acme_key):
    from governance.services.servers import server_create

    server = server_create(
        org=acme,
        actor=acme.memberships.first().user,
        name="S",
        slug="race",
        upstream_url="http://127.0.0.1:9/mcp",
    )
    now = datetime.now(UTC)
    sessions = [f"race-{i}" for i in range(40)]

    def pending(calls: int, seen: datetime) -> _Pending:
        return _Pending(
            org_id=str(acme.id),
            server_id=str(server.id),
            server_slug="race",
            key_id=str(acme_key[0].id),
            user_id=None,
            era="legacy",
            protocol_version="2025-11-25",
            calls=calls,
            last_seen=seen,
        )

    def flush(calls: int, seen: datetime, gate: threading.Barrier) -> None:
        try:
            for sid in sessions:
                gate.wait()
                _flush_one(sid, pending(calls, seen))
        finally:
            connection.close()

    gate = threading.Barrier(2)
    later = now + timedelta(seconds=5)
    threads = [
        threading.Thread(target=flush, args=(3, later, gate)),
        threading.Thread(target=flush, args=(4, now, gate)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    rows = {s.id: s for s in AgentSession.objects.filter(id__in=sessions)}
    assert {sid: rows[sid].calls for sid in sessions} == {sid: 7 for sid in sessions}
    assert all(rows[sid].last_seen_at == later for sid in sessions)  # never moves back
