"""Ingest sources in the console: add (secret shown once), rotate, delete, who may do what."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from governance.models import IngestSource, PendingEvent
from governance.services import ingest_sources as ingest_source_services
from governance.services.ingest_sources import ingest_source_secret
from tests.compliance.test_ingest import fixture, post
from tests.conftest import _user, login

pytestmark = pytest.mark.django_db


def _secret(response) -> str:
    match = re.search(r'data-testid="new-secret">([^<]+)<', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


def test_an_owner_adds_a_source_and_its_secret_works_once_shown(client, alice, acme):
    login(client, alice)
    assert client.get(reverse("console:ingest_sources")).status_code == 200
    response = client.post(
        reverse("console:ingest_source_create"), {"name": "portkey prod", "provider": "generic"}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    source = IngestSource.objects.get(org=acme, name="portkey prod")
    secret = _secret(response)
    assert secret == ingest_source_secret(source)
    assert "/api/v1/ingest/generic" in response.content.decode()
    # The secret is not stored in clear, and the list never shows it.
    assert secret.encode() not in bytes(source.secret_encrypted)
    listing = client.get(reverse("console:ingest_sources")).content.decode()
    assert "portkey prod" in listing and str(source.id) in listing and secret not in listing
    # The sender can use it.
    answer = post(client, "generic", fixture("generic"), source=source, secret=secret)
    assert answer.status_code == 200, answer.content


def test_bad_input_shows_field_errors_and_stores_nothing(client, alice, acme):
    login(client, alice)
    ingest_source_services.ingest_source_create(org=acme, actor=alice, name="feed", provider="otlp")
    for data, field in (
        ({"name": "", "provider": "generic"}, "name"),
        ({"name": "x", "provider": "smoke-signals"}, "provider"),
        ({"name": "feed", "provider": "generic"}, "name"),  # taken
    ):
        response = client.post(reverse("console:ingest_source_create"), data)
        assert response.status_code == 200
        assert response.context["form"].errors.get(field), (data, response.context["form"].errors)
    assert IngestSource.objects.filter(org=acme).count() == 1


def test_rotating_refuses_the_old_secret_and_deleting_refuses_the_source(client, alice, acme):
    source, old = ingest_source_services.ingest_source_create(
        org=acme, actor=alice, name="feed", provider="generic"
    )
    login(client, alice)
    response = client.post(reverse("console:ingest_source_rotate", args=[source.id]))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    new = _secret(response)
    assert new != old
    assert post(client, "generic", fixture("generic"), source=source, secret=old).status_code == 401
    assert post(client, "generic", fixture("generic"), source=source, secret=new).status_code == 200

    response = client.post(reverse("console:ingest_source_delete", args=[source.id]))
    assert response.status_code == 302
    assert not IngestSource.objects.filter(pk=source.pk).exists()
    assert post(client, "generic", fixture("generic"), source=source, secret=new).status_code == 401
    types = set(PendingEvent.objects.filter(org_id=acme.id).values_list("payload__type", flat=True))
    assert {"ingest_source.rotated", "ingest_source.deleted"} <= types


def test_a_developer_manages_only_the_sources_they_added(client, alice, bob, acme):
    alices, _ = ingest_source_services.ingest_source_create(
        org=acme, actor=alice, name="alice's", provider="generic"
    )
    login(client, bob)  # developer
    response = client.post(
        reverse("console:ingest_source_create"), {"name": "bob's", "provider": "helicone"}
    )
    assert response.status_code == 200
    bobs = IngestSource.objects.get(org=acme, name="bob's")
    listing = client.get(reverse("console:ingest_sources")).content.decode()
    assert reverse("console:ingest_source_rotate", args=[bobs.id]) in listing
    assert reverse("console:ingest_source_rotate", args=[alices.id]) not in listing
    for name in ("console:ingest_source_rotate", "console:ingest_source_delete"):
        assert client.post(reverse(name, args=[alices.id])).status_code == 403
    assert IngestSource.objects.get(pk=alices.pk).rotated_at is None
    assert client.post(reverse("console:ingest_source_rotate", args=[bobs.id])).status_code == 200


def test_a_ciso_sees_the_sources_but_changes_nothing_and_an_auditor_sees_none(client, alice, acme):
    from governance.models import Membership

    source, _ = ingest_source_services.ingest_source_create(
        org=acme, actor=alice, name="feed", provider="generic"
    )
    auditor = _user("olga@acme.test")
    Membership.objects.create(org=acme, user=auditor, role="auditor")
    login(client, auditor)
    assert client.get(reverse("console:ingest_sources")).status_code == 403
    ciso = _user("carol@acme.test")
    Membership.objects.create(org=acme, user=ciso, role="ciso")
    login(client, ciso)
    assert client.post(reverse("console:ingest_source_delete", args=[source.id])).status_code == 403
    listing = client.get(reverse("console:ingest_sources"))
    assert listing.status_code == 200 and "feed" in listing.content.decode()
    assert "Rotate secret" not in listing.content.decode()
    response = client.post(
        reverse("console:ingest_source_create"), {"name": "x", "provider": "generic"}
    )
    assert response.status_code == 403
    assert IngestSource.objects.filter(org=acme).count() == 1
