"""Every error under /api/ is problem+json, including the ones Django gives before, around or
instead of an API view: an oversized body, a CSRF failure, a path no route matches, a method a
page does not take, a request Django itself refuses, an unexpected exception."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from governance.models import McpServer, PolicyDraft
from tests.api.conftest import outbox_count
from tests.api.test_bad_input import assert_problem

pytestmark = pytest.mark.django_db


def _padded_draft(size: int) -> bytes:
    """A policy draft body of exactly `size` bytes (its one rule's description is too long)."""
    shell = json.dumps({"rules": [{"id": "r1", "action": "allow", "description": ""}]})
    head, tail = shell.split('""')
    padding = size - len(head) - len(tail) - 2
    return f'{head}"{"x" * padding}"{tail}'.encode()


def test_a_json_body_above_django_s_default_limit_is_read_as_json(api, world, settings):
    # 3 MB: above Django's default 2.5 MB, which answered with an HTML 400 page.
    before = outbox_count()
    body = _padded_draft(3_000_000)
    problem = assert_problem(api.put("policies/draft/", raw=body), 400, "invalid")
    assert problem["errors"][0]["field"] == "rules[0].description"
    assert outbox_count() == before


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_a_413(api, world, settings):
    limit = settings.IGRIS_API_MAX_BODY_BYTES
    problem = assert_problem(api.put("policies/draft/", raw=_padded_draft(limit)), 400, "invalid")
    assert problem["errors"][0]["field"] == "rules[0].description"

    rules = PolicyDraft.objects.get(org=world.server.org).rules
    before = outbox_count()
    problem = assert_problem(
        api.put("policies/draft/", raw=_padded_draft(limit + 1)), 413, "body_too_large"
    )
    assert problem["max_bytes"] == limit
    assert f"the limit is {limit} bytes" in problem["detail"]
    assert PolicyDraft.objects.get(org=world.server.org).rules == rules
    assert outbox_count() == before


def test_the_size_limit_is_a_setting(api, world, settings):
    settings.IGRIS_API_MAX_BODY_BYTES = 100
    body = {"name": "S", "slug": "s2", "upstream_url": "http://x.test/" + "p" * 100}
    problem = assert_problem(api.post("servers/", body), 413, "body_too_large")
    assert problem["max_bytes"] == 100
    assert not McpServer.objects.filter(slug="s2").exists()


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unknown_api_path_is_a_404_problem_whatever_the_method(admin_key, method):
    # A client that enforces CSRF as browsers do: the unknown path used to get Django's CSRF page.
    client = Client(enforce_csrf_checks=True)
    headers = {"Authorization": f"Bearer {admin_key[1]}"}
    for path in ("/api/v1/nothing/", "/api/v1/servers", "/api/nothing/", "/api/auth/nothing"):
        response = getattr(client, method)(
            path, "{}", content_type="application/json", headers=headers
        )
        problem = assert_problem(response, 404, "not_found")
        assert path in problem["detail"]


def test_an_unknown_api_path_is_a_404_problem_for_a_console_session_too(alice):
    from tests.conftest import login

    client = Client(enforce_csrf_checks=True)
    login(client, alice)
    response = client.post("/api/v1/nothing/", "{}", content_type="application/json")
    assert_problem(response, 404, "not_found")
    assert_problem(client.get("/api/nothing/"), 404, "not_found")


def test_a_csrf_failure_under_api_is_a_403_problem():
    # allauth's headless browser API checks CSRF with Django's middleware.
    client = Client(enforce_csrf_checks=True)
    body = json.dumps({"email": "alice@acme.test", "password": "wrong password"})
    response = client.post("/api/auth/browser/v1/auth/login", body, content_type="application/json")
    problem = assert_problem(response, 403, "permission_denied")
    assert problem["reason"] == "csrf"
    assert "CSRF cookie not set" in problem["detail"]


def test_a_csrf_failure_on_a_console_page_is_still_django_s_page(alice):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"login": "a@b.test", "password": "x"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_a_wrong_method_on_the_schema_and_the_docs_is_a_json_problem(anonymous):
    for path in ("/api/v1/schema/", "/api/v1/docs/"):
        response = anonymous.call("delete", path)
        problem = assert_problem(response, 405, "method_not_allowed")
        assert json.loads(response.content) == problem  # JSON, not the schema view's YAML
    response = anonymous.call("post", "/api/v1/docs/reference/")
    assert_problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"


def test_a_request_django_refuses_is_a_400_problem(api):
    response = api.call("get", "servers/", headers={"Host": "not-allowed.example"})
    assert_problem(response, 400, "bad_request")


def test_an_unexpected_exception_is_a_500_problem(client, admin_key, monkeypatch):
    from governance.api.views import servers

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(servers, "servers_for_org", broken)
    client.raise_request_exception = False
    response = client.get("/api/v1/servers/", headers={"Authorization": f"Bearer {admin_key[1]}"})
    problem = assert_problem(response, 500, "server_error")
    assert "a bug" not in problem["detail"]
