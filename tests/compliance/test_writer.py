"""The audit writer: outbox and stream into the hash-chained, append-only audit table."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction

from compliance.audit import drainer, writer
from compliance.audit.chain import CHAINED_FIELDS, GENESIS, event_hash
from compliance.audit.rows import MALFORMED_TYPE
from compliance.audit.verify import verify_chain
from compliance.audit.writer import (
    GROUP,
    StreamDrainer,
    append_events,
    drain_outbox,
    drain_stream,
    run_forever,
)
from compliance.models import AppendOnlyError, AuditEvent, ChainHead, Checkpoint
from compliance.services import checkpoint_create
from governance.events import AUDIT_STREAM, Actor, Envelope
from governance.models import PendingEvent
from governance.runtime.hotstate import MemoryHotState, RedisHotState
from governance.services.organizations import organization_update

AGENT = Actor(kind="api_key", id=str(uuid.uuid4()), label="acme agents")


def tool_call(org_id, **data) -> dict:
    fields = {
        "server_id": str(uuid.uuid4()),
        "server_slug": "github",
        "session_id": "sess-1",
        "method": "tools/call",
        "tool": "create_issue",
        "decision": "allow",
        "latency_ms": 12,
        "upstream_ms": 10.25,
        "upstream_status": 200,
        "result": "ok",
        "arguments": {"repo": "acme/web", "title": "Hello"},
        **data,
    }
    return Envelope(
        org_id=str(org_id), type="tool_call", source="proxy", actor=AGENT, data=fields
    ).as_dict()


def chain_of(org_id) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(org_id=org_id).order_by("seq"))


def assert_chained(events: list[AuditEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    prev = GENESIS
    for event in events:
        assert event.prev_hash == prev
        assert event_hash(event.chain_dict()) == event.hash
        prev = event.hash


@pytest.fixture
def empty_audit_tables_after():
    """Transactional tests end with a TRUNCATE of every table, which the audit triggers refuse
    for a non-empty table: empty ours first, as the table owner, with the triggers lifted."""
    yield
    with connection.cursor() as cursor:
        for table in ("compliance_auditevent", "compliance_checkpoint"):
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            cursor.execute(f"TRUNCATE {table}")
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


@pytest.fixture
async def redis_hotstate():
    hotstate = RedisHotState(settings.REDIS_URL, prefix=f"igris-test-{uuid.uuid4().hex[:8]}:")
    yield hotstate
    await hotstate.redis.delete(hotstate._key("stream", AUDIT_STREAM))
    await hotstate.close()
    # The writer's database work ran in asgiref's worker thread: close its connection so the
    # test database can be dropped.
    await sync_to_async(connections.close_all)()


@pytest.fixture(params=["redis", "memory"])
async def hotstate(request, redis_hotstate):
    if request.param == "redis":
        return redis_hotstate
    return MemoryHotState(prefix="igris-test-memory:")


# --- the outbox -------------------------------------------------------------------------------


def test_every_model_column_but_the_hash_is_chained():
    columns = {f.attname for f in AuditEvent._meta.concrete_fields}
    assert columns - {"hash"} == set(CHAINED_FIELDS)


@pytest.mark.django_db
def test_state_changes_become_chained_audit_events_per_organisation(acme, globex, alice, acme_key):
    organization_update(org=acme, actor=alice, name="Acme Corp")
    payloads = {p["id"]: p for p in PendingEvent.objects.values_list("payload", flat=True)}

    assert drain_outbox() == 4

    acme_events, globex_events = chain_of(acme.id), chain_of(globex.id)
    assert [e.type for e in acme_events] == ["org.created", "api_key.created", "org.updated"]
    assert [e.type for e in globex_events] == ["org.created"]
    assert_chained(acme_events)
    assert_chained(globex_events)
    assert acme_events[1].key_id == acme_key[0].id  # a data value of a column's type is lifted
    for event in acme_events + globex_events:
        envelope = event.as_envelope()
        assert (envelope.pop("seq"), envelope.pop("hash")) == (event.seq, event.hash)
        assert envelope == payloads[str(event.id)]  # nothing lost or altered
    head = ChainHead.objects.get(org_id=acme.id)
    assert (head.seq, head.hash) == (3, acme_events[-1].hash)
    assert not PendingEvent.objects.exists()


@pytest.mark.django_db
def test_draining_again_stores_nothing_twice(acme):
    payload = PendingEvent.objects.get().payload
    assert drain_outbox() == 1
    assert drain_outbox() == 0
    # The same envelope delivered again (a replayed outbox row) is consumed, not stored again.
    PendingEvent.objects.create(org_id=acme.id, payload=payload)
    assert drain_outbox() == 0
    assert not PendingEvent.objects.exists()
    assert AuditEvent.objects.filter(org_id=acme.id).count() == 1


@pytest.mark.django_db
def test_call_fields_land_in_columns_and_the_rest_in_data(acme):
    envelope = tool_call(acme.id, upstream_status="200", policy_version=True, extra={"a": 1})
    assert append_events([envelope]) == 1

    event = AuditEvent.objects.get(id=envelope["id"])
    assert (event.server_slug, event.tool, event.decision) == ("github", "create_issue", "allow")
    assert (event.latency_ms, event.upstream_ms) == (12.0, 10.25)
    assert str(event.server_id) == envelope["data"]["server_id"]
    assert event.arguments == {"repo": "acme/web", "title": "Hello"}
    # Values that would not read back as written stay in data.
    assert event.upstream_status is None and event.policy_version is None
    assert event.data == {"upstream_status": "200", "policy_version": True, "extra": {"a": 1}}
    assert event.as_envelope()["data"] == envelope["data"]
    assert_chained(chain_of(acme.id))


@pytest.mark.django_db
@pytest.mark.parametrize("insert", ["copy", "bulk"])
def test_copy_and_insert_store_the_same_verifiable_rows(insert):
    org = uuid.uuid4()
    envelopes = [tool_call(org, request_bytes=n, response_bytes=2**40) for n in range(5)]
    envelopes.append(tool_call(org, arguments=None, client_info={"name": "claude-code"}))

    assert append_events(envelopes, insert=insert) == 6

    events = chain_of(org)
    assert_chained(events)
    assert [e.request_bytes for e in events[:5]] == [0, 1, 2, 3, 4]
    assert events[5].arguments is None and events[5].client_info == {"name": "claude-code"}
    assert verify_chain(org).ok


@pytest.mark.django_db
@pytest.mark.parametrize("insert", ["copy", "bulk"])
def test_json_columns_holding_a_string_or_a_number_keep_it(insert):
    org = uuid.uuid4()
    envelopes = [
        tool_call(org, arguments="plain text"),
        tool_call(org, arguments=12, client_info=["a", 1.5]),
    ]

    assert append_events(envelopes, insert=insert) == 2

    events = chain_of(org)
    assert [e.arguments for e in events] == ["plain text", 12]
    assert events[1].client_info == ["a", 1.5]
    assert verify_chain(org).ok


@pytest.mark.django_db
def test_a_batch_mixing_stored_and_new_events_chains_only_the_new_ones():
    org = uuid.uuid4()
    first = [tool_call(org, n=n) for n in range(30)]
    assert append_events(first, insert="copy") == 30

    second = [*first[10:20], *(tool_call(org, n=n) for n in range(30, 55))]
    assert append_events(second, insert="copy") == 25

    events = chain_of(org)
    assert [e.data["n"] for e in events] == list(range(55))
    assert_chained(events)
    head = ChainHead.objects.get(org_id=org)
    assert (head.seq, head.hash) == (55, events[-1].hash)
    assert verify_chain(org).ok


@pytest.mark.django_db
def test_a_malformed_event_is_kept_and_does_not_block_the_chain(acme):
    PendingEvent.objects.create(org_id=acme.id, payload={"id": "not-a-uuid", "ts": "yesterday"})
    PendingEvent.objects.create(org_id=acme.id, payload={**tool_call(acme.id), "ts": "bad"})
    good = tool_call(acme.id)
    PendingEvent.objects.create(org_id=acme.id, payload=good)

    assert drain_outbox() == 4

    events = chain_of(acme.id)
    assert [e.type for e in events] == ["org.created", MALFORMED_TYPE, MALFORMED_TYPE, "tool_call"]
    assert "not-a-uuid" in events[1].data["raw"]
    assert events[1].data["error"].startswith("id ")
    assert str(events[3].id) == good["id"]
    assert_chained(events)


@pytest.mark.django_db(transaction=True)
def test_two_writers_draining_at_once_store_every_event_once(empty_audit_tables_after):
    orgs = [uuid.uuid4() for _ in range(3)]
    PendingEvent.objects.bulk_create(
        PendingEvent(org_id=orgs[n % 3], payload=tool_call(orgs[n % 3], n=n)) for n in range(600)
    )
    barrier, counts, errors = threading.Barrier(2), [], []

    def work():
        try:
            barrier.wait()
            counts.append(drain_outbox(batch=40))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(counts) == 600
    assert AuditEvent.objects.count() == 600
    for org in orgs:
        events = chain_of(org)
        assert len(events) == 200
        assert_chained(events)
    assert not PendingEvent.objects.exists()


# --- append-only ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_database_refuses_to_change_or_remove_audit_history(acme):
    drain_outbox()
    event = AuditEvent.objects.get(org_id=acme.id, seq=1)
    checkpoint = checkpoint_create(org_id=acme.id)
    statements = [
        ("UPDATE compliance_auditevent SET type = 'forged' WHERE id = %s", [event.id]),
        ("DELETE FROM compliance_auditevent WHERE id = %s", [event.id]),
        ("TRUNCATE compliance_auditevent", None),
        ("UPDATE compliance_checkpoint SET seq = 99 WHERE id = %s", [checkpoint.id]),
        ("DELETE FROM compliance_checkpoint", None),
        ("TRUNCATE compliance_checkpoint", None),
    ]
    for sql, params in statements:
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
    assert AuditEvent.objects.get(id=event.id).type == "org.created"
    assert Checkpoint.objects.get(id=checkpoint.id).seq == 1


@pytest.mark.django_db
def test_the_orm_refuses_to_change_or_remove_audit_history(acme):
    drain_outbox()
    event = AuditEvent.objects.get(org_id=acme.id)
    attempts = [
        lambda: AuditEvent.objects.filter(id=event.id).update(type="forged"),
        lambda: AuditEvent.objects.filter(id=event.id).delete(),
        lambda: AuditEvent.objects.bulk_update([event], ["type"]),
        lambda: AuditEvent.objects.update_or_create(id=event.id, defaults={"type": "x"}),
        event.save,
        event.delete,
    ]
    for attempt in attempts:
        with pytest.raises(AppendOnlyError):
            attempt()
    assert AuditEvent.objects.get(id=event.id).type == "org.created"


# --- the stream -------------------------------------------------------------------------------


async def append(hotstate, envelopes) -> list[str]:
    return await hotstate.stream_append_many(
        AUDIT_STREAM, [{"event": json.dumps(e)} for e in envelopes]
    )


def record_writes(monkeypatch, *, fail_first: bool = False) -> list[int]:
    """Patch the writer's batch write to record each batch's size (and fail the first)."""
    real, sizes = drainer._written_in_transaction, []

    def recording(batch, insert):
        sizes.append(batch.result.consumed)
        if fail_first and len(sizes) == 1:
            raise DatabaseError("connection lost")
        return real(batch, insert)

    monkeypatch.setattr(drainer, "_written_in_transaction", recording)
    return sizes


async def nothing_pending(hotstate) -> bool:
    claimed = await hotstate.stream_pending_claim(
        AUDIT_STREAM, GROUP, "inspector", min_idle_ms=0, count=1000
    )
    return claimed == []


@pytest.mark.django_db(transaction=True)
async def test_stream_events_are_stored_acknowledged_and_published(
    hotstate, empty_audit_tables_after
):
    org = uuid.uuid4()
    envelopes = [tool_call(org, n=n) for n in range(5)]
    await append(hotstate, envelopes)

    async with hotstate.subscribe(f"live:{org}") as live:
        assert await drain_stream(hotstate, batch=2) == 5
        async with asyncio.timeout(5):
            messages = [json.loads((await anext(live))[1]) for _ in envelopes]

    events = await sync_to_async(chain_of)(org)
    assert [str(e.id) for e in events] == [e["id"] for e in envelopes]
    assert_chained(events)
    assert [m["seq"] for m in messages] == [1, 2, 3, 4, 5]
    assert messages == [e.as_envelope() for e in events]
    assert messages[0]["data"] == envelopes[0]["data"]
    assert await nothing_pending(hotstate)
    assert await drain_stream(hotstate) == 0


@pytest.mark.django_db(transaction=True)
def test_the_command_drains_once_and_exits(acme, empty_audit_tables_after):
    out = io.StringIO()
    call_command("run_audit_writer", "--once", stdout=out)
    assert out.getvalue().strip() == "stored 1 events from the outbox, 0 from the stream"
    assert [e.type for e in chain_of(acme.id)] == ["org.created"]


@pytest.mark.django_db(transaction=True)
async def test_a_crashed_writers_entries_are_claimed_without_duplicates(
    redis_hotstate, empty_audit_tables_after
):
    hs, org = redis_hotstate, uuid.uuid4()
    envelopes = [tool_call(org, n=n) for n in range(6)]
    await append(hs, envelopes)
    await hs.stream_ensure_group(AUDIT_STREAM, GROUP)
    # The dead writer read all six, committed the first four, and died before acknowledging.
    read = await hs.stream_read_group(AUDIT_STREAM, GROUP, "dead-writer", count=10)
    assert len(read) == 6
    assert await sync_to_async(append_events)(envelopes[:4]) == 4

    drainer = StreamDrainer(hs, consumer="new-writer", claim_min_idle_ms=0)
    await drainer.claim_stale()

    assert (drainer.stored, drainer.duplicates) == (2, 4)
    events = await sync_to_async(chain_of)(org)
    assert [str(e.id) for e in events] == [e["id"] for e in envelopes]
    assert_chained(events)
    assert await nothing_pending(hs)


@pytest.mark.django_db(transaction=True)
async def test_entries_are_not_claimed_while_their_reader_may_still_be_working(
    redis_hotstate, empty_audit_tables_after
):
    hs, org = redis_hotstate, uuid.uuid4()
    await append(hs, [tool_call(org)])
    await hs.stream_ensure_group(AUDIT_STREAM, GROUP)
    await hs.stream_read_group(AUDIT_STREAM, GROUP, "busy-writer", count=10)

    assert await drain_stream(hs, consumer="other-writer") == 0  # default idle: 30 s
    assert await drain_stream(hs, consumer="other-writer", claim_min_idle_ms=0) == 1


@pytest.mark.django_db(transaction=True)
async def test_bad_stream_entries_never_block_the_chain(redis_hotstate, empty_audit_tables_after):
    hs, org = redis_hotstate, uuid.uuid4()
    nul = tool_call(org, note="nul \x00 here")
    naive = tool_call(org)
    naive["ts"] = "2026-11-25T10:00:00"
    good = tool_call(org)
    ids = await hs.stream_append_many(
        AUDIT_STREAM,
        [
            {"event": b"{not json"},  # no organisation to chain it to
            {"event": json.dumps(nul)},
            {"event": json.dumps(naive)},
            {"event": json.dumps(good)},
        ],
    )

    assert await drain_stream(hs, consumer="writer-1") == 3

    events = await sync_to_async(chain_of)(org)
    assert [e.type for e in events] == [MALFORMED_TYPE, MALFORMED_TYPE, "tool_call"]
    assert "NUL" in events[0].data["error"]
    assert "time zone" in events[1].data["error"]
    assert str(events[2].id) == good["id"]
    assert_chained(events)
    # The unreadable entry stays unacknowledged (and logged) instead of being dropped.
    left = await hs.stream_pending_claim(AUDIT_STREAM, GROUP, "inspector", min_idle_ms=0)
    assert [entry_id for entry_id, _ in left] == [ids[0]]


@pytest.mark.django_db(transaction=True)
async def test_a_failed_batch_is_retried_without_loss_or_duplicates(
    redis_hotstate, empty_audit_tables_after, monkeypatch
):
    hs, org = redis_hotstate, uuid.uuid4()
    envelopes = [tool_call(org, n=n) for n in range(3)]
    await append(hs, envelopes)
    calls = record_writes(monkeypatch, fail_first=True)
    drainer = StreamDrainer(hs, consumer="writer-1")
    with pytest.raises(DatabaseError):
        await drainer.read_once()
    assert await sync_to_async(chain_of)(org) == []

    assert await drainer.read_once() == 3  # the same entries, from memory
    assert await drainer.read_once() == 0
    assert calls == [3, 3]
    events = await sync_to_async(chain_of)(org)
    assert [str(e.id) for e in events] == [e["id"] for e in envelopes]
    assert await nothing_pending(hs)


@pytest.mark.django_db(transaction=True)
async def test_a_write_failing_while_the_next_batch_is_read_loses_and_repeats_nothing(
    redis_hotstate, empty_audit_tables_after, monkeypatch
):
    # pump() reads and prepares batch 2 while batch 1 is written; batch 1's failure surfaces
    # there, and both are retried in their order.
    hs, org = redis_hotstate, uuid.uuid4()
    envelopes = [tool_call(org, n=n) for n in range(7)]
    await append(hs, envelopes)
    calls = record_writes(monkeypatch, fail_first=True)
    drainer = StreamDrainer(hs, consumer="writer-1", batch=3)
    assert await drainer.pump() == 3  # batch 1 is being written
    with pytest.raises(DatabaseError):
        await drainer.pump()  # batch 2 read and prepared; batch 1's failure comes up
    while await drainer.pump():
        pass
    assert calls == [3, 6, 1]  # batch 1 failed; batches 1 and 2 retried as one; then the rest
    events = await sync_to_async(chain_of)(org)
    assert [str(e.id) for e in events] == [e["id"] for e in envelopes]
    assert_chained(events)
    assert drainer.stored == 7 and drainer.duplicates == 0
    assert await nothing_pending(hs)


@pytest.mark.django_db(transaction=True)
async def test_run_forever_drains_outbox_and_stream_until_stopped(
    redis_hotstate, acme, alice, empty_audit_tables_after, monkeypatch
):
    hs = redis_hotstate
    real, failures = writer._drain_outbox_batch, []

    def flaky(batch):
        if not failures:
            failures.append(1)
            raise DatabaseError("database restarting")
        return real(batch)

    monkeypatch.setattr(writer, "_drain_outbox_batch", flaky)
    stop = asyncio.Event()
    async with hs.subscribe(f"live:{acme.id}") as live:
        task = asyncio.create_task(
            run_forever(stop, hotstate=hs, outbox_idle_s=0.05, stream_block_ms=100)
        )
        await append(hs, [tool_call(acme.id)])
        await sync_to_async(organization_update)(org=acme, actor=alice, name="Acme Corp")
        async with asyncio.timeout(10):
            messages = [json.loads((await anext(live))[1]) for _ in range(3)]
        stop.set()
        await asyncio.wait_for(task, 5)

    events = await sync_to_async(chain_of)(acme.id)
    assert sorted(e.type for e in events) == ["org.created", "org.updated", "tool_call"]
    assert_chained(events)
    assert sorted(m["seq"] for m in messages) == [1, 2, 3]
    assert failures == [1]
    assert (await sync_to_async(verify_chain)(acme.id)).ok


@pytest.mark.django_db(transaction=True)
async def test_after_a_part_batch_the_writer_lingers_so_a_trickle_is_stored_together(
    redis_hotstate, empty_audit_tables_after, monkeypatch
):
    hs, org = redis_hotstate, uuid.uuid4()
    batches = record_writes(monkeypatch)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_forever(stop, hotstate=hs, outbox_idle_s=0.05, stream_block_ms=100, linger_ms=1500)
    )
    try:
        await append(hs, [tool_call(org, n=0)])
        async with asyncio.timeout(10):
            while batches != [1]:
                await asyncio.sleep(0.01)
        # The writer now lingers after that part batch: four calls trickling in meanwhile (each
        # would be a batch of its own to a writer blocked on the stream) are stored as one.
        for n in range(1, 5):
            await append(hs, [tool_call(org, n=n)])
            await asyncio.sleep(0.05)
        async with asyncio.timeout(10):
            while sum(batches) < 5:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert batches == [1, 4]
    events = await sync_to_async(chain_of)(org)
    assert [e.data["n"] for e in events] == [0, 1, 2, 3, 4]
    assert_chained(events)
