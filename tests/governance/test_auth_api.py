"""allauth's headless API under /api/auth/ for programmatic clients, and sign-in rate limits."""

from __future__ import annotations

import json


def test_the_headless_api_reports_its_configuration(client, db):
    answer = client.get("/api/auth/browser/v1/config")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == 200
    assert body["data"]["account"]["login_methods"] == ["email"]


def test_a_program_signs_in_through_the_headless_api(client, alice):
    answer = client.post(
        "/api/auth/app/v1/auth/login",
        data=json.dumps({"email": alice.email, "password": "correct-horse-battery-staple"}),
        content_type="application/json",
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["data"]["user"]["email"] == alice.email
    assert body["meta"]["is_authenticated"] is True
    assert body["meta"]["session_token"]


def _login(client, password):
    return client.post(
        "/api/auth/app/v1/auth/login",
        data=json.dumps({"email": "alice@acme.test", "password": password}),
        content_type="application/json",
    )


def test_repeated_wrong_passwords_are_throttled(client, alice):
    answers = [_login(client, "wrong-password-123") for _ in range(6)]
    assert [a.status_code for a in answers[:5]] == [400] * 5
    assert "Too many failed login attempts" in json.dumps(answers[5].json())
    # Even the right password is refused while the limit holds.
    right = _login(client, "correct-horse-battery-staple")
    assert right.status_code == 400
    assert "Too many failed login attempts" in json.dumps(right.json())
