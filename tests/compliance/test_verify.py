"""Verifying audit chains: what tampering each check catches, and the command auditors run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from compliance.audit.chain import GENESIS, event_hash
from compliance.audit.verify import ChainBreak, verify_chain
from compliance.audit.writer import append_events, drain_outbox
from compliance.models import AuditEvent, ChainHead, Checkpoint
from compliance.services import checkpoint_create
from governance.events import SYSTEM, Envelope

ROOT = Path(__file__).resolve().parents[2]


def record(org_id, count: int) -> None:
    append_events(
        Envelope(
            org_id=str(org_id), type="test.event", source="system", actor=SYSTEM, data={"n": n}
        ).as_dict()
        for n in range(count)
    )


def tamper(sql: str, params=None) -> None:
    """What an attacker with the table owner's rights can do: lift the triggers, edit, restore.
    (DDL is transactional in PostgreSQL: this all rolls back with the test.)"""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER USER")


@pytest.fixture
def acme_chain(acme):
    """acme's chain: org.created and five more events."""
    drain_outbox()
    record(acme.id, 5)
    return acme


@pytest.mark.django_db
def test_an_untouched_chain_verifies(acme_chain, globex, django_assert_num_queries):
    drain_outbox()
    # Head, checkpoints, rows: the same three queries whatever the chain's length.
    with django_assert_num_queries(3):
        result = verify_chain(acme_chain.id, chunk_size=2)
    assert (result.ok, result.checked, result.first_break, result.head_seq) == (True, 6, None, 6)
    assert verify_chain(globex.id).checked == 1
    assert verify_chain(uuid.uuid4()).ok  # an organisation without events has nothing to break


@pytest.mark.django_db
def test_an_edited_row_is_found(acme_chain):
    tamper(
        "UPDATE compliance_auditevent SET data = '{\"n\": 99}' WHERE org_id = %s AND seq = 4",
        [acme_chain.id],
    )
    result = verify_chain(acme_chain.id)
    assert not result.ok
    assert result.first_break == ChainBreak(4, "hash mismatch", "row content changed")
    assert result.checked == 3


@pytest.mark.django_db
def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(acme_chain):
    tamper(
        "UPDATE compliance_auditevent SET hash = %s WHERE org_id = %s AND seq = 3",
        ["f" * 64, acme_chain.id],
    )
    # Row 3 no longer matches its own content first; an attacker who also recomputes row 3's
    # hash from edited content moves the break to row 4's prev_hash.
    assert verify_chain(acme_chain.id).first_break.reason == "hash mismatch"
    event = AuditEvent.objects.get(org_id=acme_chain.id, seq=3)
    event.data = {"n": 1000}
    tamper(
        "UPDATE compliance_auditevent SET data = '{\"n\": 1000}', hash = %s WHERE id = %s",
        [event_hash(event.chain_dict()), event.id],
    )
    result = verify_chain(acme_chain.id)
    assert (result.first_break.seq, result.first_break.reason) == (4, "prev_hash mismatch")


@pytest.mark.django_db
def test_a_deleted_row_is_a_gap(acme_chain):
    tamper("DELETE FROM compliance_auditevent WHERE org_id = %s AND seq = 2", [acme_chain.id])
    result = verify_chain(acme_chain.id)
    assert (result.first_break.seq, result.first_break.reason) == (2, "gap")
    assert result.checked == 1


@pytest.mark.django_db
def test_a_deleted_tail_is_a_gap_while_the_chain_head_remembers_it(acme_chain):
    tamper("DELETE FROM compliance_auditevent WHERE org_id = %s AND seq >= 5", [acme_chain.id])
    result = verify_chain(acme_chain.id)
    assert (result.first_break.seq, result.first_break.reason) == (5, "gap")


def truncate_tail(org_id, keep: int) -> None:
    """Delete events after `keep` and rewrite the chain head to match: invisible to the chain."""
    tamper("DELETE FROM compliance_auditevent WHERE org_id = %s AND seq > %s", [org_id, keep])
    last = AuditEvent.objects.get(org_id=org_id, seq=keep)
    ChainHead.objects.filter(org_id=org_id).update(seq=keep, hash=last.hash)


@pytest.mark.django_db
def test_without_a_checkpoint_a_rewritten_tail_goes_unnoticed(acme_chain):
    # The weakness signed checkpoints exist for (compliance-and-billing.md 4.3).
    truncate_tail(acme_chain.id, keep=3)
    assert verify_chain(acme_chain.id).ok


@pytest.mark.django_db
def test_a_checkpoint_catches_a_truncated_tail(acme_chain):
    checkpoint = checkpoint_create(org_id=acme_chain.id)
    assert checkpoint.seq == 6
    drain_outbox()  # the audit.checkpoint_created event, seq 7
    assert AuditEvent.objects.get(org_id=acme_chain.id, seq=7).data["checkpoint_id"] == (
        checkpoint.id
    )
    assert verify_chain(acme_chain.id).ok

    truncate_tail(acme_chain.id, keep=4)

    result = verify_chain(acme_chain.id)
    assert (result.first_break.seq, result.first_break.reason) == (5, "checkpoint mismatch")
    assert result.checked == 4


@pytest.mark.django_db
def test_a_forged_checkpoint_is_refused(acme_chain):
    checkpoint_create(org_id=acme_chain.id)
    Checkpoint.objects.create(
        org_id=acme_chain.id,
        seq=2,
        hash="a" * 64,
        created_at=AuditEvent.objects.first().ts,
        key_id="0" * 16,
        signature="00" * 64,
    )
    result = verify_chain(acme_chain.id)
    assert (result.first_break.seq, result.first_break.reason) == (2, "checkpoint mismatch")


@pytest.mark.django_db
def test_a_checkpoint_of_an_empty_chain_signs_the_genesis_hash():
    org = uuid.uuid4()
    checkpoint = checkpoint_create(org_id=org)
    assert (checkpoint.seq, checkpoint.hash) == (0, GENESIS)
    assert verify_chain(org).ok


# --- the command ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_prints_a_line_per_organisation(acme_chain, globex, capsys):
    drain_outbox()
    call_command("verify_audit_chain")
    out = capsys.readouterr().out
    assert f"{acme_chain.id} acme: ok, 6 events" in out
    assert f"{globex.id} globex: ok, 1 events" in out

    call_command("verify_audit_chain", "--org", "globex")
    assert capsys.readouterr().out.strip() == f"{globex.id} globex: ok, 1 events"


@pytest.mark.django_db
def test_the_command_fails_on_a_break(acme_chain, capsys):
    tamper("DELETE FROM compliance_auditevent WHERE org_id = %s AND seq = 3", [acme_chain.id])
    with pytest.raises(CommandError, match="1 of 1 audit chains are broken"):
        call_command("verify_audit_chain", "--org", str(acme_chain.id))
    assert "BROKEN at seq 3: gap" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no organisation"):
        call_command("verify_audit_chain", "--org", "nobody")


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_non_zero_on_a_break(acme_chain):
    def run() -> subprocess.CompletedProcess[str]:
        db = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        }
        return subprocess.run(
            [sys.executable, "manage.py", "verify_audit_chain"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        assert run().returncode == 0
        tamper(
            "UPDATE compliance_auditevent SET type = 'forged' WHERE org_id = %s AND seq = 2",
            [acme_chain.id],
        )
        broken = run()
        assert broken.returncode == 1
        assert "BROKEN at seq 2: hash mismatch" in broken.stdout
    finally:
        with connection.cursor() as cursor:  # let the test flush empty the table
            cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER USER")
            cursor.execute("TRUNCATE compliance_auditevent")
            cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER USER")
