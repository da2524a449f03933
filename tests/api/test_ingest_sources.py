"""Ingest sources through the API: the secret is shown once, on create and rotate, and works."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from governance.models import IngestSource

pytestmark = pytest.mark.django_db


def _signed(secret: str, body: bytes) -> str:
    t = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def test_a_created_source_signs_ingestion_and_its_secret_is_shown_once(api, client, world):
    created = api.post("ingest-sources/", {"name": "gw", "provider": "generic"})
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    secret = created.json()["secret"]
    source_id = created.json()["id"]
    assert "secret" not in api.get(f"ingest-sources/{source_id}/").json()
    assert all("secret" not in s for s in api.get("ingest-sources/").json()["results"])
    assert secret not in bytes(IngestSource.objects.get(pk=source_id).secret_encrypted).decode(
        "latin-1"
    )
    body = json.dumps(
        {"events": [{"type": "tool_call", "ts": "2026-11-25T10:00:00Z", "tool": "echo"}]}
    ).encode()
    answer = client.post(
        "/api/v1/ingest/generic",
        data=body,
        content_type="application/json",
        HTTP_X_IGRIS_SOURCE=source_id,
        HTTP_X_IGRIS_SIGNATURE=_signed(secret, body),
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["accepted"] == [0]


def test_rotating_replaces_the_secret_at_once(api, client, world):
    created = api.post("ingest-sources/", {"name": "gw2", "provider": "generic"}).json()
    rotated = api.post(f"ingest-sources/{created['id']}/rotate/")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != created["secret"]
    body = b'{"events": [{"type": "tool_call", "ts": "2026-11-25T10:00:00Z", "tool": "echo"}]}'
    old = client.post(
        "/api/v1/ingest/generic",
        data=body,
        content_type="application/json",
        HTTP_X_IGRIS_SOURCE=created["id"],
        HTTP_X_IGRIS_SIGNATURE=_signed(created["secret"], body),
    )
    assert old.status_code == 401
    new = client.post(
        "/api/v1/ingest/generic",
        data=body,
        content_type="application/json",
        HTTP_X_IGRIS_SOURCE=created["id"],
        HTTP_X_IGRIS_SIGNATURE=_signed(new_secret, body),
    )
    assert new.status_code == 200


def test_an_unknown_provider_is_a_field_error_and_nothing_is_written(api, world):
    before = IngestSource.objects.count()
    answer = api.post("ingest-sources/", {"name": "x", "provider": "splunk"})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "provider"
    assert IngestSource.objects.count() == before
