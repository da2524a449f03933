"""Bad input gets a precise problem+json 4xx and changes nothing."""

from __future__ import annotations

import pytest

from tests.api.conftest import outbox_count, send
from tests.api.endpoints import ENDPOINTS, ids

pytestmark = pytest.mark.django_db

WITH_BODY = [e for e in ENDPOINTS if e.body is not None]
LISTS = [
    "members/",
    "invitations/",
    "api-keys/",
    "servers/",
    "tools/",
    "policies/versions/",
    "sessions/",
    "anomalies/",
    "audit-events/",
]


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:igris:problem:{code}"
    assert problem["title"] and problem["detail"]
    return problem


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ids(ENDPOINTS))
def test_an_unknown_query_parameter_is_refused_by_name(api, world, endpoint):
    before = outbox_count()
    params = {**endpoint.params, "colour": "blue"}
    problem = assert_problem(send(api, endpoint, world, params=params), 400, "unknown_field")
    assert problem["errors"] == [
        {"field": "colour", "message": "Unknown field.", "code": "unknown_field"}
    ]
    assert outbox_count() == before


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=ids(WITH_BODY))
def test_an_unknown_body_field_or_a_body_that_is_no_object_is_refused(api, world, endpoint):
    from tests.api.conftest import fill_body

    before = outbox_count()
    body = {**fill_body(endpoint.body, world), "colour": "blue", "size": 3}
    problem = assert_problem(send(api, endpoint, world, body=body), 400, "unknown_field")
    assert sorted(e["field"] for e in problem["errors"]) == ["colour", "size"]
    problem = assert_problem(send(api, endpoint, world, body=["a", "list"]), 400, "invalid")
    assert problem["errors"][0]["field"] is None
    assert outbox_count() == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("servers/", {"name": "S", "slug": "s2", "upstream_url": "not a url"}, "upstream_url"),
        ("servers/", {"name": "S", "slug": "S 2!", "upstream_url": "http://x.test/"}, "slug"),
        ("servers/", {"name": ["S"], "slug": "s2", "upstream_url": "http://x.test/"}, "name"),
        (
            "servers/",
            {
                "name": "S",
                "slug": "s2",
                "upstream_url": "http://x.test/",
                "connect_timeout_s": "fast",
            },
            "connect_timeout_s",
        ),
        (
            "servers/",
            {"name": "S", "slug": "s2", "upstream_url": "http://x.test/", "connect_timeout_s": 0},
            "connect_timeout_s",
        ),
        ("api-keys/", {"name": "k", "scopes": ["root"]}, "scopes[0]"),
        ("api-keys/", {"name": "k", "scopes": "read"}, "scopes"),
        ("api-keys/", {"name": "k", "scopes": []}, "scopes"),
        ("api-keys/", {"name": "k", "scopes": ["read"], "expires_at": "soon"}, "expires_at"),
        (
            "api-keys/",
            {"name": "k", "scopes": ["read"], "allowed_servers": ["x"]},
            "allowed_servers[0]",
        ),
        ("invitations/", {"email": "not-an-email", "role": "auditor"}, "email"),
        ("invitations/", {"email": "a@acme.test", "role": "emperor"}, "role"),
        ("policies/simulate/", {"server": "files", "arguments": [1]}, "arguments"),
        ("policies/simulate/", {"server": "files", "version": "latest"}, "version"),
        ("policies/simulate/", {"server": "files", "version": True}, "version"),
        ("policies/simulate/", {"server": "files", "version": 99}, "version"),
        (
            "policies/replay/",
            {"from": "2020-01-02T00:00:00Z", "to": "2020-01-01T00:00:00Z"},
            "to",
        ),
        (
            "sessions/kill-all/",
            {"scope": "org", "id": "00000000-0000-0000-0000-000000000000"},
            "id",
        ),
        ("sessions/kill-all/", {"scope": "key"}, "id"),
        ("sessions/kill-all/", {"scope": "galaxy"}, "scope"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_field(api, world, path, body, field):
    from governance.models import ApiKey, Invitation, McpServer

    counts = (McpServer.objects.count(), ApiKey.objects.count(), Invitation.objects.count())
    before = outbox_count()
    problem = assert_problem(api.post(path, body), 400, "invalid")
    assert field in [e["field"] for e in problem["errors"]]
    assert outbox_count() == before
    assert (McpServer.objects.count(), ApiKey.objects.count(), Invitation.objects.count()) == counts


def test_a_patch_with_a_wrong_type_changes_nothing(api, acme):
    problem = assert_problem(
        api.patch("organization/", {"name": "New", "audit_retention_days": "lots"}), 400, "invalid"
    )
    assert problem["errors"][0]["field"] == "audit_retention_days"
    acme.refresh_from_db()
    assert acme.name == "Acme"


def test_a_value_postgresql_cannot_store_is_refused(api, world):
    rules = [{"id": "r1", "action": "allow", "description": "nul \x00 here"}]
    problem = assert_problem(api.put("policies/draft/", {"rules": rules}), 400, "invalid")
    assert problem["errors"][0]["field"] == "rules"


BAD_PAGES = [
    ({"cursor": "not-a-cursor"}, "cursor", "invalid_cursor"),
    ({"cursor": "WyJ4Il0"}, "cursor", "invalid_cursor"),  # ["x"]: right size, wrong type
    ({"cursor": "W10"}, "cursor", "invalid_cursor"),  # []: wrong size
    ({"limit": "201"}, "limit", "max_value"),
    ({"limit": "0"}, "limit", "min_value"),
    ({"limit": "ten"}, "limit", "invalid"),
]


@pytest.mark.parametrize("path", LISTS)
def test_a_bad_cursor_or_page_size_is_refused(api, world, path):
    for params, field, code in BAD_PAGES:
        problem = assert_problem(api.get(path, **params), 400, "invalid")
        assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, code)], params


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("sessions/", {"state": "sleeping"}, "state"),
        ("sessions/", {"server": "files"}, "server"),
        ("anomalies/", {"status": "closed"}, "status"),
        ("anomalies/", {"kind": "volcano"}, "kind"),
        ("tools/", {"state": "melted"}, "state"),
        ("tools/", {"server": "123"}, "server"),
        ("audit-events/", {"since": "yesterday"}, "since"),
        ("audit-events/", {"key": "k1"}, "key"),
        ("audit-events/export/", {"format": "xlsx"}, "format"),
    ],
)
def test_a_bad_filter_value_is_refused_naming_it(api, world, path, params, field):
    problem = assert_problem(api.get(path, **params), 400, "invalid")
    assert [e["field"] for e in problem["errors"]] == [field]
    if field in ("state", "status", "kind", "format"):  # enums name the value they refuse
        assert f'"{params[field]}"' in problem["errors"][0]["message"]


def test_every_anomaly_kind_the_detectors_record_can_be_filtered_on(api, world):
    from governance.models import AnomalyKind

    for kind in AnomalyKind.values:
        expected = [world.anomaly.id] if kind == world.anomaly.kind else []
        results = api.get("anomalies/", kind=kind).json()["results"]
        assert [a["id"] for a in results] == [str(a) for a in expected]


def test_malformed_json_is_a_problem(api):
    problem = assert_problem(api.post("servers/", raw=b'{"name": '), 400, "malformed_json")
    assert problem["errors"] == []


def test_json_nested_too_deeply_is_a_problem(api, world):
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_problem(api.put("policies/draft/", raw=deep), 400, "malformed_json")
    nested: dict = {}
    for _ in range(100):
        nested = {"a": nested}
    rules = [{"id": "r1", "action": "allow", "description": "x", "match": {}, "x": nested}]
    problem = assert_problem(api.put("policies/draft/", {"rules": rules}), 400, "invalid")
    assert "nested too deeply" in problem["errors"][0]["message"]


def test_a_nul_character_in_a_path_is_not_found(api, world):
    assert_problem(api.get("sessions/sess%00/"), 404, "not_found")
    assert_problem(api.post("sessions/sess%00/kill/"), 404, "not_found")


def test_a_body_that_is_not_json_is_unsupported(api):
    response = api.post("servers/", raw=b"name=x", content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415, "unsupported_media_type")


def test_an_unknown_method_is_not_allowed(api):
    assert_problem(api.call("put", "servers/", {}), 405, "method_not_allowed")


def test_an_unknown_path_is_a_problem_not_a_page(api):
    assert_problem(api.get("nothing-here/"), 404, "not_found")
    assert_problem(api.get("servers/../../"), 404, "not_found")


def test_a_member_id_out_of_range_is_not_found(api, world):
    assert_problem(api.get(f"members/{2**70}/"), 404, "not_found")
    assert_problem(api.get("anomalies/-1/"), 404, "not_found")
    assert_problem(api.get("tools/1e3/"), 404, "not_found")


def test_a_json_accept_header_is_not_required(api):
    response = api.call("get", "servers/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    response = api.call("get", "servers/x/", headers={"Accept": "text/html"})
    assert_problem(response, 404, "not_found")
