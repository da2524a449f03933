"""Policies through the API: the draft (field-level validation errors), publish, versions, diff,
rollback, and the dry run that explains each skipped rule."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

RULES = [
    {"id": "allow-read", "action": "allow", "match": {"tools": ["read_*"]}},
    {"id": "no-prod", "action": "deny", "match": {"servers": ["prod-*"]}},
    {"id": "ci-only", "action": "allow", "match": {"key_tags": ["ci"], "tools": ["deploy"]}},
    {"id": "off", "action": "allow", "enabled": False},
]


def test_a_draft_with_bad_rules_is_refused_rule_by_rule_and_not_saved(api, world):
    from governance.models import PolicyDraft

    before = PolicyDraft.objects.get(org=world.server.org).rules
    bad = [
        {"id": "ok", "action": "allow"},
        {"id": "r2", "action": "maybe"},
        {"id": "r3", "action": "deny", "match": {"arguments": [{"path": "x", "op": "like"}]}},
        "not a rule",
    ]
    response = api.put("policies/draft/", {"rules": bad})
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "invalid"
    fields = [e["field"] for e in problem["errors"]]
    assert fields == ["rules[1].action", "rules[2].match.arguments[0].op", "rules[3]"]
    assert all(e["code"] == "invalid_rule" for e in problem["errors"])
    assert PolicyDraft.objects.get(org=world.server.org).rules == before


def _many(count: int) -> list[dict]:
    return [{"id": f"r{i}", "action": "allow", "match": {"tools": [f"t{i}"]}} for i in range(count)]


def test_a_draft_over_the_rule_cap_is_refused_naming_the_cap(api, world, settings):
    from governance.models import PendingEvent, PolicyDraft

    cap = settings.IGRIS_POLICY_MAX_RULES
    assert cap == 500  # the documented default
    before = PolicyDraft.objects.get(org=world.server.org).rules
    events = PendingEvent.objects.count()
    response = api.put("policies/draft/", {"rules": _many(cap + 1)})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid"
    [error] = problem["errors"]
    assert error["field"] == "rules"
    assert f"has {cap + 1} rules; a policy holds at most {cap}" in error["message"]
    assert PolicyDraft.objects.get(org=world.server.org).rules == before
    assert PendingEvent.objects.count() == events

    assert api.put("policies/draft/", {"rules": _many(cap)}).status_code == 200
    assert len(PolicyDraft.objects.get(org=world.server.org).rules) == cap


def test_the_rule_cap_is_a_setting_that_publish_and_rollback_keep_to(api, world, settings):
    from governance.models import PolicyVersion

    assert api.put("policies/draft/", {"rules": _many(4)}).status_code == 200
    settings.IGRIS_POLICY_MAX_RULES = 3
    assert api.put("policies/draft/", {"rules": _many(4)}).status_code == 400
    # A draft saved under a higher cap is not published, nor an old version republished.
    refused = api.post("policies/publish/")
    assert (refused.status_code, refused.json()["errors"][0]["field"]) == (400, "rules")
    assert "at most 3" in refused.json()["errors"][0]["message"]
    settings.IGRIS_POLICY_MAX_RULES = 4
    assert api.post("policies/publish/").status_code == 201
    assert api.put("policies/draft/", {"rules": _many(1)}).status_code == 200
    assert api.post("policies/publish/").status_code == 201
    settings.IGRIS_POLICY_MAX_RULES = 3
    refused = api.post("policies/versions/2/rollback/")
    assert refused.status_code == 400
    assert PolicyVersion.objects.filter(org=world.server.org).count() == 3


def test_a_draft_is_saved_published_and_listed(api, world):
    saved = api.put("policies/draft/", {"rules": RULES})
    assert saved.status_code == 200
    draft = saved.json()
    assert draft["latest_version"] == 1
    assert draft["changes_from_latest"]["added"] == ["allow-read", "no-prod", "ci-only", "off"]
    assert draft["changes_from_latest"]["removed"] == ["deny-delete"]
    assert draft["updated_by"] == "alice@acme.test"
    published = api.post("policies/publish/", {"note": "second"})
    assert published.status_code == 201
    assert (published.json()["number"], published.json()["rules"]) == (2, RULES)
    versions = api.get("policies/versions/").json()["results"]
    assert [(v["number"], v["rule_count"]) for v in versions] == [(2, 4), (1, 1)]
    assert api.get("policies/draft/").json()["changes_from_latest"]["added"] == []


def test_two_versions_are_compared(api, world):
    api.put("policies/draft/", {"rules": [RULES[0], {**RULES[1], "action": "alert"}]})
    api.post("policies/publish/")
    diff = api.get("policies/versions/1/diff/2/").json()
    assert diff == {
        "from_version": 1,
        "to_version": 2,
        "added": ["allow-read", "no-prod"],
        "removed": ["deny-delete"],
        "changed": [],
        "reordered": False,
    }
    assert api.get("policies/versions/1/diff/9/").status_code == 404


def test_a_rollback_publishes_the_old_rules_again(api, world):
    from governance.models import PolicyDraft, PolicyVersion

    api.put("policies/draft/", {"rules": RULES})
    api.post("policies/publish/")
    response = api.post("policies/versions/1/rollback/", {"note": "oops"})
    assert response.status_code == 201
    assert (response.json()["number"], response.json()["rolled_back_from"]) == (3, 1)
    assert PolicyVersion.objects.get(org=world.server.org, number=3).rules == world.version.rules
    assert PolicyDraft.objects.get(org=world.server.org).rules == world.version.rules
    assert api.post("policies/versions/7/rollback/").status_code == 404


def test_publishing_without_a_draft_is_a_conflict(client, globex, charlie):
    from tests.api.conftest import Api, make_key

    api = Api(client, make_key(globex, charlie, ["write"])[1])
    response = api.post("policies/publish/")
    assert (response.status_code, response.json()["code"]) == (409, "no_draft")


def test_the_dry_run_explains_why_each_earlier_rule_did_not_match(api, world):
    api.put("policies/draft/", {"rules": RULES})
    answer = api.post(
        "policies/simulate/",
        {"server": "prod-db", "tool": "deploy", "key_tags": ["ci"], "version": "draft"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["policy"] == "draft"
    assert body["decision"]["action"] == "deny"
    assert body["decision"]["rule_id"] == "no-prod"
    assert body["matched_rule"] == RULES[1]
    assert body["skipped"] == [
        {"rule_index": 0, "rule_id": "allow-read", "reason": body["skipped"][0]["reason"]}
    ]
    assert "deploy" in body["skipped"][0]["reason"]


def test_the_dry_run_falls_to_the_posture_and_reads_published_versions(api, world):
    body = api.post(
        "policies/simulate/", {"server": "files", "tool": "read_file", "version": 1}
    ).json()
    assert body["policy"] == "version 1"
    assert body["decision"]["rule_id"] is None
    assert body["decision"]["reason"] == "default posture deny"
    assert body["decision"]["version"] == 1
    assert body["matched_rule"] is None
    assert [s["rule_id"] for s in body["skipped"]] == ["deny-delete"]
    denied = api.post("policies/simulate/", {"server": "files", "tool": "delete_all", "version": 1})
    assert denied.json()["decision"]["message"] == "Denied by policy rule deny-delete."
