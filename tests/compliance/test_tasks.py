"""The beat schedule's tasks: checkpoint signing, chain verification, idle-session closing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from compliance.audit.verify import checkpoint_valid, verify_chain
from compliance.audit.writer import drain_outbox
from compliance.models import Checkpoint
from compliance.tasks import sign_checkpoints, verify_chains
from governance.models import AgentSession, PendingEvent, SessionState
from governance.tasks import close_idle_sessions
from tests.compliance.test_verify import record, tamper

pytestmark = pytest.mark.django_db


def test_checkpoints_are_signed_only_for_chains_that_moved(acme, globex):
    drain_outbox()  # org.created for both
    record(acme.id, 3)
    assert sign_checkpoints() == {"signed": 2, "skipped": 0}
    first = {c.org_id: c for c in Checkpoint.objects.all()}
    assert first[acme.id].seq == 4 and first[globex.id].seq == 1
    assert all(checkpoint_valid(c) for c in first.values())

    drain_outbox()  # the two audit.checkpoint_created events are now in the chains
    # A checkpoint's own event does not count as movement: nothing to sign.
    assert sign_checkpoints() == {"signed": 0, "skipped": 0}

    record(acme.id, 1)
    assert sign_checkpoints() == {"signed": 1, "skipped": 0}
    drain_outbox()
    latest = Checkpoint.objects.filter(org_id=acme.id).order_by("-seq").first()
    assert latest.seq == 6  # 4 + its checkpoint event + one more
    assert verify_chain(acme.id).ok and verify_chain(globex.id).ok


def test_a_head_that_does_not_match_its_row_is_not_signed(acme):
    drain_outbox()
    record(acme.id, 2)
    tamper(
        "UPDATE compliance_auditevent SET hash = %s WHERE org_id = %s AND seq = 3",
        ["0" * 64, acme.id],
    )
    assert sign_checkpoints() == {"signed": 0, "skipped": 1}
    assert not Checkpoint.objects.filter(org_id=acme.id).exists()


def test_verification_records_a_break_in_that_organisation_only(acme, globex):
    drain_outbox()
    record(acme.id, 4)
    record(globex.id, 2)
    assert verify_chains() == {"checked": 2, "broken": 0}
    assert not PendingEvent.objects.filter(payload__type="audit.chain_broken").exists()

    tamper(
        "UPDATE compliance_auditevent SET data = '{\"n\": 7}' WHERE org_id = %s AND seq = 3",
        [acme.id],
    )
    assert verify_chains() == {"checked": 2, "broken": 1}
    [event] = PendingEvent.objects.filter(payload__type="audit.chain_broken")
    assert event.org_id == acme.id
    assert event.payload["data"]["first_break"]["seq"] == 3
    assert event.payload["data"]["verified_before_break"] == 2


def test_idle_active_sessions_are_closed_and_others_left_alone(acme, globex):
    old = timezone.now() - timedelta(seconds=settings.IGRIS_SESSION_TTL_S + 60)

    def session(sid, org, state, last_seen):
        return AgentSession.objects.create(
            id=sid, org=org, server_slug="demo", era="legacy", state=state, last_seen_at=last_seen
        )

    session("idle", acme, SessionState.ACTIVE, old)
    session("idle-globex", globex, SessionState.ACTIVE, old)
    session("recent", acme, SessionState.ACTIVE, timezone.now())
    session("suspended", acme, SessionState.SUSPENDED, old)
    assert close_idle_sessions() == {"closed": 2}
    states = dict(AgentSession.objects.values_list("id", "state"))
    assert states == {
        "idle": "closed",
        "idle-globex": "closed",
        "recent": "active",
        "suspended": "suspended",
    }
    idle = AgentSession.objects.get(id="idle")
    assert idle.ended_at == idle.last_seen_at and idle.state_reason == "idle"
