"""Idempotency-Key on creating POSTs, and the per-key request budget (429 + Retry-After)."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, make_key, outbox_count

pytestmark = pytest.mark.django_db

CREATES = [
    ("invitations/", {"email": "new@acme.test", "role": "auditor"}, {"email": "b@acme.test"}),
    ("api-keys/", {"name": "ci", "scopes": ["read"]}, {"name": "cd"}),
    (
        "servers/",
        {"name": "S", "slug": "srv-s", "upstream_url": "http://x.test/"},
        {"slug": "srv-t"},
    ),
    ("policies/publish/", {"note": "one"}, {"note": "two"}),
    ("policies/versions/{version}/rollback/", {"note": "back"}, {"note": "forth"}),
]


def _count(path: str) -> int:
    from governance.models import ApiKey, Invitation, McpServer, PolicyVersion

    model = {"inv": Invitation, "api": ApiKey, "ser": McpServer}.get(path[:3], PolicyVersion)
    return model.objects.count()


@pytest.mark.parametrize(("path", "body", "change"), CREATES, ids=[c[0] for c in CREATES])
def test_a_retry_with_the_same_key_replays_the_answer_and_creates_nothing(
    api, world, path, body, change
):
    path = path.format(version=world.version.number)
    headers = {"Idempotency-Key": "create-1"}
    first = api.post(path, body, headers=headers)
    assert first.status_code == 201, first.content
    created, events = _count(path), outbox_count()
    again = api.post(path, body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert (_count(path), outbox_count()) == (created, events)
    other = api.post(path, {**body, **change}, headers=headers)
    assert other.status_code == 422
    assert other["Content-Type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    assert (_count(path), outbox_count()) == (created, events)
    fresh = api.post(path, {**body, **change}, headers={"Idempotency-Key": "create-2"})
    assert fresh.status_code == 201
    assert _count(path) == created + 1


def test_without_a_key_each_post_creates(api, world):
    body = {"name": "ci", "scopes": ["read"]}
    assert api.post("api-keys/", body).json()["id"] != api.post("api-keys/", body).json()["id"]


def _cached_bytes() -> list[bytes]:
    from django.conf import settings
    from django.core.cache import cache

    if settings.REDIS_URL:
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        return [redis.get(key) for key in redis.scan_iter("*idem:*")]
    return list(cache._cache.values())


def test_the_replayed_key_secret_is_the_one_created_and_is_not_cached_in_clear(api, world):
    headers = {"Idempotency-Key": "key-secret"}
    first = api.post("api-keys/", {"name": "ci", "scopes": ["read"]}, headers=headers).json()
    again = api.post("api-keys/", {"name": "ci", "scopes": ["read"]}, headers=headers).json()
    assert again["secret"] == first["secret"]
    stored = _cached_bytes()
    assert stored
    secret = first["secret"].encode()
    assert all(secret not in value and secret[3:20] not in value for value in stored)


def test_a_failed_request_is_not_remembered(api, world):
    headers = {"Idempotency-Key": "fix-and-retry"}
    bad = api.post(
        "servers/", {"name": "S", "slug": "s!", "upstream_url": "http://x/"}, headers=headers
    )
    assert bad.status_code == 400
    good = api.post(
        "servers/",
        {"name": "S", "slug": "srv-s", "upstream_url": "http://x.test/"},
        headers=headers,
    )
    assert good.status_code == 201


def test_the_same_key_from_another_principal_is_independent(client, api, world, acme, alice):
    other = Api(client, make_key(acme, alice, ["read", "write", "admin"], name="other")[1])
    headers = {"Idempotency-Key": "shared"}
    body = {"name": "S", "slug": "srv-a", "upstream_url": "http://x.test/"}
    assert api.post("servers/", body, headers=headers).status_code == 201
    answer = other.post("servers/", {**body, "slug": "srv-b"}, headers=headers)
    assert answer.status_code == 201
    assert "Idempotent-Replayed" not in answer


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_a_malformed_idempotency_key_is_refused(api, world, key):
    body = {"name": "S", "slug": "srv-s", "upstream_url": "http://x.test/"}
    response = api.post("servers/", body, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert _count("servers/") == 1


def test_a_request_still_running_with_the_same_key_is_a_conflict(api, world, monkeypatch):
    from django.core.cache import cache

    add = cache.add
    monkeypatch.setattr(
        cache, "add", lambda key, *a, **kw: not key.startswith("idem-lock:") and add(key, *a, **kw)
    )
    body = {"name": "S", "slug": "srv-s", "upstream_url": "http://x.test/"}
    response = api.post("servers/", body, headers={"Idempotency-Key": "busy"})
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_in_progress"
    assert _count("servers/") == 1


@pytest.fixture
def three_per_minute(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api": "3/min"},
    }


def test_a_key_over_its_budget_is_throttled_with_retry_after(
    client, api, acme, alice, three_per_minute
):
    for _ in range(3):
        assert api.get("servers/").status_code == 200
    response = api.get("servers/")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert problem["retry_after"] == int(response["Retry-After"])
    other = Api(client, make_key(acme, alice, ["read"], name="other")[1])
    assert other.get("servers/").status_code == 200


def test_a_throttled_write_changes_nothing(api, world, three_per_minute):
    for _ in range(3):
        api.get("servers/")
    response = api.patch(f"servers/{world.server.id}/", {"description": "late"})
    assert response.status_code == 429
    world.server.refresh_from_db()
    assert world.server.description == ""


def test_the_default_budget_comes_from_the_environment():
    from django.conf import settings

    from igris_project.env import env_int

    expected = f"{env_int('IGRIS_API_RATE_PER_MIN', 1200)}/min"
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api"] == expected
