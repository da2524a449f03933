"""The benchmark seed stores through the writer's path: the chain verifies and the rollups agree."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from compliance.audit.verify import verify_chain
from compliance.models import AuditEvent, CallHour, CallMinute
from governance.models import Organization

pytestmark = pytest.mark.django_db


def test_the_seed_stores_a_verifiable_chain_counted_in_the_rollups():
    out = io.StringIO()
    call_command(
        "seed_audit_volume", "--events", "500", "--servers", "3", "--agents", "7", stdout=out
    )
    org = Organization.objects.get(slug="bench-volume")
    assert AuditEvent.objects.filter(org_id=org.id).count() == 500
    assert "stored 500 events" in out.getvalue()
    assert CallMinute.objects.filter(org_id=org.id).aggregate(n=Sum("calls"))["n"] == 500
    assert CallHour.objects.filter(org_id=org.id).aggregate(n=Sum("calls"))["n"] == 500
    denied = AuditEvent.objects.filter(org_id=org.id, decision="deny").count()
    assert CallHour.objects.filter(org_id=org.id).aggregate(n=Sum("denials"))["n"] == denied
    assert (
        len(set(AuditEvent.objects.filter(org_id=org.id).values_list("server_slug", flat=True)))
        == 3
    )
    assert verify_chain(org.id).ok


def test_a_second_organisation_seeded_in_the_same_database_gets_all_its_events():
    for slug in ("bench-one", "bench-two"):
        call_command(
            "seed_audit_volume", "--org-slug", slug, "--events", "50", stdout=io.StringIO()
        )
    for slug in ("bench-one", "bench-two"):
        org = Organization.objects.get(slug=slug)
        assert AuditEvent.objects.filter(org_id=org.id).count() == 50
        assert verify_chain(org.id).ok


def test_seeding_the_same_organisation_twice_is_refused_with_a_clear_error():
    call_command("seed_audit_volume", "--events", "20", stdout=io.StringIO())
    with pytest.raises(CommandError, match="stored 0 of 20 events for bench-volume"):
        call_command("seed_audit_volume", "--events", "20", stdout=io.StringIO())
    org = Organization.objects.get(slug="bench-volume")
    assert AuditEvent.objects.filter(org_id=org.id).count() == 20
