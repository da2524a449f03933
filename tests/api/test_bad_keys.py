"""Brute force on the REST API and ingestion: failed keys from one address get 429 JSON."""

from __future__ import annotations

import pytest

import governance.runtime.hotstate
from governance import keys

LIMIT = 3
WRONG = "ig_aaaaaaaaaaaa_" + "s" * 32


@pytest.fixture(params=["memory", "redis"])
def backend(request, settings):
    settings.IGRIS_BAD_KEY_RATE_PER_MIN = LIMIT
    keys.reset()
    if request.param == "memory":
        settings.REDIS_URL = ""
    governance.runtime.hotstate.reset_hotstate()  # the next use builds the chosen backend
    yield request.param
    governance.runtime.hotstate.reset_hotstate()
    keys.reset()


def get(client, token: str, address: str = "203.0.113.7"):
    return client.get(
        "/api/v1/servers/", headers={"Authorization": f"Bearer {token}"}, REMOTE_ADDR=address
    )


def test_the_api_throttles_an_address_that_keeps_failing(client, backend, acme_key):
    for _ in range(LIMIT):
        assert get(client, WRONG).status_code == 401
    answer = get(client, WRONG)
    assert answer.status_code == 429
    assert int(answer["Retry-After"]) >= 1
    body = answer.json()
    assert body["code"] == "throttled" and "failed API key attempts" in body["detail"]
    assert WRONG[16:] not in answer.content.decode()
    # Only failures are throttled: a valid key from the same address still gets through.
    assert get(client, acme_key[1]).status_code == 200
    assert get(client, WRONG).status_code == 429
    # Another address, valid or not, is not affected.
    assert get(client, WRONG, "198.51.100.9").status_code == 401
    assert get(client, acme_key[1], "198.51.100.9").status_code == 200


def test_valid_api_calls_do_not_spend_the_budget(client, backend, acme_key):
    for _ in range(LIMIT * 2):
        assert get(client, acme_key[1]).status_code == 200
    for _ in range(LIMIT):
        assert get(client, WRONG).status_code == 401


def test_ingestion_throttles_failed_keys_too(client, db, backend):
    def send():
        return client.post(
            "/api/v1/ingest/generic",
            data=b'{"events": []}',
            content_type="application/json",
            headers={"Authorization": f"Bearer {WRONG}"},
            REMOTE_ADDR="203.0.113.8",
        )

    for _ in range(LIMIT):
        assert send().status_code == 401
    answer = send()
    assert answer.status_code == 429 and answer["Retry-After"]
    assert answer["Content-Type"] == "application/problem+json"
    assert answer.json()["code"] == "throttled"
