"""kill -9 of the audit writer in the middle of a batch: restarted, it resumes from the stream and
stores every event exactly once, each organisation's chain gap-free and verifiable.

The stream is filled the way the proxy fills it (proxy.audit: `build_event`, then the JSON text
in field "event"). A kill is made while the writer's database connection is inside a transaction,
as pg_stat_activity shows, after some batches have committed and before the stream is drained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings
from django.db import connection

from compliance.audit.verify import verify_chain
from compliance.audit.writer import GROUP
from compliance.models import AuditEvent
from governance.events import AUDIT_STREAM, Actor
from proxy.audit import build_event
from tests.proxy.test_multiprocess import ROOT, database_url, igris_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EVENTS = 24_000
ORGS = 3
BATCH = 1000
KILLS = 2
# The writer under test names its database connection, so the test can tell its transactions
# from any other backend's (autovacuum, this test's own connection).
WRITER_APP = "igris-writer-under-test"


def _envelope(org_id: str, n: int) -> bytes:
    event = build_event(
        org_id=org_id,
        type="tool_call",
        actor=Actor(kind="api_key", id=str(uuid.uuid4()), label="agents"),
        fields={
            "server_slug": "demo",
            "method": "tools/call",
            "tool": "echo",
            "decision": "allow",
            "result": "ok",
            "latency_ms": 3,
            "arguments": {"text": f"call {n}"},
        },
    )
    # Exactly what proxy.audit.record appends.
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _fill_stream(client: redis.Redis, stream: str, orgs: list[str]) -> list[str]:
    ids: list[str] = []
    for start in range(0, EVENTS, 2000):
        with client.pipeline(transaction=False) as pipe:
            for n in range(start, min(EVENTS, start + 2000)):
                payload = _envelope(orgs[n % len(orgs)], n)
                ids.append(json.loads(payload)["id"])
                pipe.xadd(stream, {"event": payload})
            pipe.execute()
    return ids


@contextmanager
def _writer() -> Iterator[subprocess.Popen[bytes]]:
    """`run_audit_writer` as its own process; stale entries are claimed at once on start (the
    previous writer is known dead here), and the process is always gone at the end."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_audit_writer",
            "--batch",
            str(BATCH),
            "--claim-idle-ms",
            "0",
        ],
        cwd=ROOT,
        env=igris_env(DATABASE_URL=f"{database_url()}?application_name={WRITER_APP}"),
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stored() -> int:
    return AuditEvent.objects.count()


def _writer_in_batch() -> bool:
    """Whether the writer's connection is inside a transaction storing events: its last
    statement locked the chain heads, checked ids or copied rows (its outbox transactions, empty
    here, stop at the outbox table)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND backend_type = 'client backend' "
            "AND xact_start IS NOT NULL AND (query ILIKE '%%compliance_chainhead%%' "
            "OR query ILIKE '%%compliance_auditevent%%')",
            [WRITER_APP],
        )
        return cursor.fetchone()[0] > 0


def _pending(client: redis.Redis, stream: str) -> list[str]:
    """Ids of entries read by some consumer of the writer's group and not acknowledged."""
    rows = client.xpending_range(stream, GROUP, min="-", max="+", count=EVENTS)
    return [row["message_id"].decode() for row in rows]


def _event_ids(client: redis.Redis, stream: str, entry_ids: list[str]) -> list[str]:
    ids = []
    for entry_id in entry_ids:
        for _, fields in client.xrange(stream, entry_id, entry_id):
            ids.append(json.loads(fields[b"event"])["id"])
    return ids


def _kill_mid_batch(proc: subprocess.Popen[bytes], *, after: int) -> int:
    """SIGKILL the writer once more than `after` events are committed and it is inside a
    transaction again; returns how many events were committed when it died."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the audit writer exited by itself"
        if _stored() > after and _writer_in_batch():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return _stored()
        time.sleep(0.002)
    raise AssertionError(f"the writer never got past {after} stored events")


def _wait_drained(client: redis.Redis, stream: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _stored() >= EVENTS and not _pending(client, stream) and client.xlen(stream) == 0:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"not drained: {_stored()} stored, {len(_pending(client, stream))} pending, "
        f"{client.xlen(stream)} left in the stream"
    )


def test_a_writer_killed_mid_batch_resumes_without_duplicates_or_gaps():
    orgs = [str(uuid.uuid4()) for _ in range(ORGS)]
    client = redis.Redis.from_url(settings.REDIS_URL)
    stream = f"{settings.IGRIS_HOTSTATE_PREFIX}stream:{AUDIT_STREAM}"
    try:
        sent = _fill_stream(client, stream, orgs)
        rolled_back = 0
        committed_at_kill: list[int] = []
        for _ in range(KILLS):
            with _writer() as proc:
                committed = _kill_mid_batch(proc, after=_stored() + BATCH)
            committed_at_kill.append(committed)
            assert committed < EVENTS, "the stream was drained before the kill"
            # The batch in hand was read and not acknowledged: those entries wait for the next
            # writer. If none of them is stored, the kill rolled back an open transaction.
            in_hand = _pending(client, stream)
            assert in_hand, "the writer died holding no batch"
            stored_ids = set(
                map(
                    str,
                    AuditEvent.objects.filter(
                        id__in=_event_ids(client, stream, in_hand)
                    ).values_list("id", flat=True),
                )
            )
            if not stored_ids:
                rolled_back += 1
        assert rolled_back >= 1, "no kill landed inside an open transaction"
        assert committed_at_kill == sorted(committed_at_kill)

        with _writer() as proc:
            _wait_drained(client, stream, within=60)
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    finally:
        client.delete(stream)
        client.close()

    ids = [str(i) for i in AuditEvent.objects.values_list("id", flat=True)]
    assert len(ids) == len(set(ids)) == EVENTS
    assert set(ids) == set(sent)
    for org in orgs:
        seqs = list(
            AuditEvent.objects.filter(org_id=org).order_by("seq").values_list("seq", flat=True)
        )
        assert seqs == list(range(1, EVENTS // ORGS + 1))
        result = verify_chain(org)
        assert result.ok and result.checked == EVENTS // ORGS, result
