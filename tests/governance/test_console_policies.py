"""The policies console: draft list and JSON editor, publish, versions and diffs, rollback, dry run,
roles and tenant isolation."""

from __future__ import annotations

import html
import importlib
import json
import re

import pytest
from django.urls import reverse

from governance.models import Membership, PendingEvent, PolicyDraft, PolicyVersion
from governance.services import policies as policy_services
from governance.services.policies import policy_draft_update
from governance.services.servers import server_create
from tests.conftest import _user, login

pytestmark = pytest.mark.django_db

RULES = [
    {
        "id": "read-anything",
        "action": "allow",
        "match": {"tools": ["read_*", "query_*"]},
        "rate_limit": {"limit": 30, "window_s": 60, "per": "key"},
    },
    {
        "id": "no-prod-deletes",
        "action": "deny",
        "message": "Deleting on production needs a human",
        "description": "Incident 2025-04: an agent emptied the orders table.",
        "match": {"servers": ["prod-*"], "tools": ["delete_*"]},
    },
    {
        "id": "watch-config",
        "action": "alert",
        "match": {
            "tools": ["write_file"],
            "arguments": [{"path": "path", "op": "glob", "value": "/config/*"}],
        },
    },
    {"id": "allow-rest", "action": "allow"},
]


def _text(response) -> str:
    return response.content.decode()


def _events(org, kind: str) -> list[dict]:
    return [
        e.payload
        for e in PendingEvent.objects.filter(org_id=org.id).order_by("id")
        if e.payload["type"] == kind
    ]


def _save(org, actor, rules):
    return policy_draft_update(org=org, actor=actor, rules=rules)


def _publish(org, actor, rules, note=""):
    _save(org, actor, rules)
    return policy_services.policy_publish(org=org, actor=actor, note=note)


@pytest.fixture
def auditor(acme):
    user = _user("dana@acme.test")
    Membership.objects.create(org=acme, user=user, role="auditor")
    return user


# --- the page ------------------------------------------------------------------------------------


def test_the_page_lists_the_draft_rules_readably(client, alice, acme):
    _save(acme, alice, RULES)
    login(client, alice)
    response = client.get(reverse("console:policies"))
    assert response.status_code == 200
    body = _text(response)
    for rule in RULES:
        assert f'data-rule-id="{rule["id"]}"' in body
    assert '<span class="badge badge-action" data-action="deny">deny</span>' in body
    assert "Deleting on production needs a human" in body
    assert "<code>prod-*</code>" in body
    assert "path glob &quot;/config/*&quot;" in body
    assert "30 calls per 60 s per key" in body
    assert "every call" in body  # allow-rest has no match
    # The editor holds the same rules, pretty-printed.
    assert "[\n  {\n    &quot;id&quot;: &quot;read-anything&quot;,\n" in body


def test_the_page_shows_the_default_posture_with_a_link_to_settings(client, alice, acme):
    login(client, alice)
    body = _text(client.get(reverse("console:policies")))
    assert 'data-testid="posture">deny</span>' in body
    assert f'href="{reverse("console:org_settings")}"' in body
    assert "nothing published yet" in body


def test_saving_a_valid_draft_stores_it_and_records_an_event(client, alice, acme):
    login(client, alice)
    response = client.post(
        reverse("console:policy_draft_save"), {"rules": json.dumps(RULES, indent=2)}
    )
    assert response.status_code == 302
    assert response.url == reverse("console:policies")
    assert PolicyDraft.objects.get(org=acme).rules == RULES
    assert _events(acme, "policy.draft_updated")[-1]["data"] == {"rules": 4}
    assert "Saved the draft (4 rules)." in _text(client.get(response.url))


def test_an_invalid_draft_shows_every_error_and_saves_nothing(client, alice, acme):
    _save(acme, alice, RULES)
    before = PendingEvent.objects.count()
    broken = [
        {"id": "ok", "action": "allow"},
        {"id": "bad-action", "action": "block"},
        {"id": "bad-op", "action": "deny", "match": {"arguments": [{"path": "x", "op": "like"}]}},
        {"id": "ok", "action": "deny", "colour": "red"},
    ]
    submitted = json.dumps(broken, indent=2)
    login(client, alice)
    response = client.post(reverse("console:policy_draft_save"), {"rules": submitted})
    assert response.status_code == 200
    body = _text(response)
    errors = re.search(r'data-testid="rule-errors">(.*?)</ul>', body, re.S).group(1)
    assert errors.count("<li>") == 4
    assert "Rule 2 <code>bad-action</code> · <code>action</code>" in errors
    assert "Rule 3 <code>bad-op</code> · <code>match.arguments[0].op</code>" in errors
    assert "Rule 3 <code>bad-op</code> · <code>match.arguments[0].value</code>" not in errors
    assert "Rule 4 <code>ok</code> · <code>id</code>" in errors
    assert "duplicate id &#x27;ok&#x27;: rule 0 has it" in errors
    assert "Rule 4 <code>ok</code> · <code>colour</code>" in errors
    assert "4 problems found." in body and "Nothing was saved." in body
    # What was typed stays in the editor.
    assert "&quot;bad-action&quot;" in body
    assert PolicyDraft.objects.get(org=acme).rules == RULES
    assert PendingEvent.objects.count() == before


def test_text_that_is_not_json_is_refused_with_its_position(client, alice, acme):
    _save(acme, alice, RULES)
    login(client, alice)
    response = client.post(reverse("console:policy_draft_save"), {"rules": '[{"id": "x",}]'})
    assert response.status_code == 200
    assert "Not valid JSON: Expecting property name enclosed in double quotes (line 1" in _text(
        response
    )
    assert PolicyDraft.objects.get(org=acme).rules == RULES


def test_a_draft_that_is_not_a_list_is_refused(client, alice, acme):
    login(client, alice)
    response = client.post(reverse("console:policy_draft_save"), {"rules": '{"id": "x"}'})
    assert response.status_code == 200
    assert "The list · <code>rules</code>" in _text(response)
    assert not PolicyDraft.objects.filter(org=acme).exists()


def test_a_draft_over_the_rule_cap_is_refused_on_the_form_and_saves_nothing(
    client, alice, acme, settings
):
    _save(acme, alice, RULES)
    before = PendingEvent.objects.count()
    cap = settings.IGRIS_POLICY_MAX_RULES
    login(client, alice)
    response = client.post(
        reverse("console:policy_draft_save"), {"rules": json.dumps(_many(cap + 1))}
    )
    assert response.status_code == 200
    errors = re.search(r'data-testid="rule-errors">(.*?)</ul>', _text(response), re.S).group(1)
    assert "The list · <code>rules</code>" in errors
    assert f"has {cap + 1} rules; a policy holds at most {cap}" in errors
    assert PolicyDraft.objects.get(org=acme).rules == RULES
    assert PendingEvent.objects.count() == before


def _many(count: int) -> list[dict]:
    """`count` rules shaped like RULES (ids made unique), as a long real policy would be."""
    return [{**RULES[i % 4], "id": f"{RULES[i % 4]['id']}-{i}"} for i in range(count)]


def test_a_policy_at_the_rule_cap_keeps_the_policies_page_small(client, alice, acme, settings):
    cap = settings.IGRIS_POLICY_MAX_RULES
    rules = _many(cap)
    _publish(acme, alice, rules)
    _save(acme, alice, rules[::-1])  # unpublished changes: every diff line at its longest
    login(client, alice)
    response = client.get(reverse("console:policies"))
    body = _text(response)
    # Measured with these rules: 508 KB when the page held every rule and the editor's JSON,
    # 50 KB with one page of 50 rules and the editor loaded on request.
    assert len(response.content) < 100_000
    listed = re.search(r'data-testid="draft-rules">(.*?)</ol>', body, re.S).group(1)
    assert listed.count("data-rule-id=") == 50
    assert f"Rules 1\u201350 of {cap}" in body  # an en dash
    assert 'data-testid="editor-collapsed"' in body and '<textarea name="rules"' not in body
    assert "order changed" in body

    last = _text(client.get(reverse("console:policies") + f"?rules={cap // 50}"))
    listed = re.search(r'data-testid="draft-rules">(.*?)</ol>', last, re.S).group(1)
    ids = re.findall(r'data-rule-id="([^"]+)"', listed)
    assert ids == [r["id"] for r in rules[::-1][-50:]]
    assert f'title="Position {cap}"' in listed

    editor = _text(client.get(reverse("console:policies") + "?editor=all"))
    text = re.search(r'<textarea name="rules"[^>]*>(.*?)</textarea>', editor, re.S).group(1)
    assert json.loads(html.unescape(text)) == rules[::-1]


def test_a_version_at_the_rule_cap_keeps_its_page_small(client, alice, acme, settings):
    cap = settings.IGRIS_POLICY_MAX_RULES
    _publish(acme, alice, _many(cap))
    version = _publish(acme, alice, _many(cap)[::-1][: cap - 60])  # 60 removed, order changed
    login(client, alice)
    response = client.get(reverse("console:policy_version", args=[acme.slug, version.number]))
    body = _text(response)
    # Measured: 48 KB (every rule, the removed ones and the JSON made it over 500 KB).
    assert len(response.content) < 100_000
    listed = re.search(r'data-testid="version-rules">(.*?)</ol>', body, re.S).group(1)
    assert listed.count("data-rule-id=") == 50
    assert "and 10 more removed." in body
    assert "and 50 more</dd>" in body  # the removed ids: 10 named
    assert f"Show the {cap - 60} rules as JSON" in body
    shown = _text(
        client.get(
            reverse("console:policy_version", args=[acme.slug, version.number]) + "?json=all"
        )
    )
    assert "&quot;id&quot;: &quot;allow-rest-499&quot;" in shown


# --- publish, versions, rollback -----------------------------------------------------------------


def test_publishing_twice_makes_version_1_and_version_2(client, alice, acme):
    login(client, alice)
    client.post(reverse("console:policy_draft_save"), {"rules": json.dumps(RULES[:2])})
    response = client.post(reverse("console:policy_publish"), {"note": "first cut"})
    assert response.status_code == 302
    v1 = PolicyVersion.objects.get(org=acme, number=1)
    assert (v1.rules, v1.note, v1.published_by, v1.posture) == (
        RULES[:2],
        "first cut",
        alice,
        "deny",
    )

    client.post(reverse("console:policy_draft_save"), {"rules": json.dumps(RULES)})
    body = _text(client.get(reverse("console:policies")))
    assert 'data-testid="unpublished"' in body
    assert "Publish as v2" in body
    client.post(reverse("console:policy_publish"), {"note": ""})
    v2 = PolicyVersion.objects.get(org=acme, number=2)
    assert v2.rules == RULES
    assert [e["data"]["version"] for e in _events(acme, "policy.published")] == [1, 2]
    assert _events(acme, "policy.published")[1]["data"]["diff"]["added"] == [
        "watch-config",
        "allow-rest",
    ]

    body = _text(client.get(reverse("console:policies")))
    table = re.search(r'data-testid="versions-table">(.*?)</table>', body, re.S).group(1)
    assert table.index('data-version="2"') < table.index('data-version="1"')
    assert "first cut" in table
    assert re.search(r'data-version="2".*?>live</span>', table, re.S)
    assert "unpublished changes" not in body and "same as v2" in body


def test_publishing_without_a_draft_says_so(client, alice, acme):
    login(client, alice)
    response = client.post(reverse("console:policy_publish"), {"note": "x"}, follow=True)
    assert "There is no draft to publish." in _text(response)
    assert not PolicyVersion.objects.filter(org=acme).exists()


def test_the_version_page_shows_its_rules_and_the_diff_against_the_previous_one(
    client, alice, acme
):
    _publish(acme, alice, RULES[:3])
    changed = [dict(RULES[1], message="Never on prod"), RULES[0], RULES[3]]
    v2 = _publish(acme, alice, changed, note="tighten")
    login(client, alice)
    response = client.get(reverse("console:policy_version", args=[acme.slug, v2.number]))
    assert response.status_code == 200
    body = _text(response)
    diff = re.search(r'data-testid="version-diff">(.*?)</section>', body, re.S).group(1)
    assert re.search(r'data-change="added">added</span></dt><dd><code>allow-rest</code>', diff)
    assert re.search(r'data-change="changed">changed</span></dt><dd><code>no-prod-deletes', diff)
    assert re.search(r'data-change="removed">removed</span></dt><dd><code>watch-config', diff)
    assert "order</span></dt><dd>changed" in diff
    rules = re.search(r'data-testid="version-rules">(.*?)</ol>', body, re.S).group(1)
    assert "Never on prod" in rules
    assert 'class="rule is-changed" data-rule-id="no-prod-deletes"' in rules
    assert 'class="rule is-added" data-rule-id="allow-rest"' in rules
    removed = re.search(r'data-testid="removed-rules">(.*?)</ol>', body, re.S).group(1)
    assert 'data-rule-id="watch-config"' in removed
    assert "“tighten”" in body
    # The live version offers no rollback to itself; the first one does.
    assert "Roll back to v2" not in body
    v1 = PolicyVersion.objects.get(org=acme, number=1)
    first = _text(client.get(reverse("console:policy_version", args=[acme.slug, v1.number])))
    assert "First version: every rule is new" in first
    assert "Roll back to v1" in first


def test_a_version_is_addressed_by_its_policy_and_number_never_by_a_database_id(
    client, alice, acme, charlie, globex
):
    # globex publishes first, so acme's versions have ids that are not their numbers.
    for _ in range(2):
        _publish(globex, charlie, [{"id": "globex-only", "action": "allow"}])
    v1 = _publish(acme, alice, RULES[:1])
    v2 = _publish(acme, alice, RULES)
    assert (v1.pk, v2.pk) != (1, 2)
    assert reverse("console:policy_version", args=[acme.slug, 2]) == "/policies/acme/versions/2/"
    login(client, alice)

    for page in ("console:policies", "console:policy_versions"):
        body = _text(client.get(reverse(page)))
        assert 'href="/policies/acme/versions/2/"' in body, page
        assert f"/versions/{v2.pk}/" not in body, page
    body = _text(client.get("/policies/acme/versions/2/"))
    assert "<h1>Version 2" in body
    first = _text(client.get("/policies/acme/versions/1/"))
    assert 'action="/policies/acme/versions/1/rollback/"' in first
    assert client.get("/policies/acme/versions/3/").status_code == 404
    assert client.get(f"/policies/versions/{v2.pk}/").status_code == 404

    # A refused rollback returns to the version's own address.
    response = client.post("/policies/acme/versions/1/rollback/", {"note": "x" * 301})
    assert (response.status_code, response["Location"]) == (302, "/policies/acme/versions/1/")
    assert PolicyVersion.objects.filter(org=acme).count() == 2


def test_rolling_back_publishes_version_3_with_the_rules_of_version_1(client, alice, acme):
    v1 = _publish(acme, alice, RULES[:1])
    _publish(acme, alice, RULES)
    login(client, alice)
    response = client.post(
        reverse("console:policy_rollback", args=[acme.slug, v1.number]),
        {"note": "v2 blocked the nightly job"},
    )
    assert response.status_code == 302
    v3 = PolicyVersion.objects.get(org=acme, number=3)
    assert v3.rules == RULES[:1]
    assert v3.rolled_back_from == 1
    assert v3.note == "v2 blocked the nightly job"
    assert PolicyDraft.objects.get(org=acme).rules == RULES[:1]
    assert _events(acme, "policy.published")[-1]["data"]["rolled_back_from"] == 1
    body = _text(client.get(reverse("console:policies")))
    assert "Rolled back to v1 (from v2)" in body
    assert "Published version 3 with the rules of version 1" in body


def _note_cell(body: str, number: int) -> str:
    """The text of the versions table's Note column for version `number`."""
    row = re.search(rf'<tr data-version="{number}">(.*?)</tr>', body, re.S).group(1)
    note = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[2]
    return " ".join(re.sub(r"<[^>]+>", " ", note).split())


def test_a_rollback_says_once_which_version_it_went_back_to_and_from_which(client, alice, acme):
    v1 = _publish(acme, alice, RULES[:1], note="first")
    _publish(acme, alice, RULES[:2])
    _publish(acme, alice, RULES)
    login(client, alice)
    client.post(reverse("console:policy_rollback", args=[acme.slug, v1.number]), {})
    client.post(
        reverse("console:policy_rollback", args=[acme.slug, v1.number]),
        {"note": "v3 blocked the job"},
    )

    v4, v5 = PolicyVersion.objects.filter(org=acme, number__in=[4, 5]).order_by("number")
    assert (v4.note, v4.rolled_back_from) == ("", 1)
    assert (v5.note, v5.rolled_back_from) == ("v3 blocked the job", 1)
    versions = _text(client.get(reverse("console:policy_versions")))
    assert _note_cell(versions, 4) == "Rolled back to v1 (from v3)"
    assert _note_cell(versions, 5) == "Rolled back to v1 (from v4) v3 blocked the job"
    assert _note_cell(versions, 2) == "—"
    assert _note_cell(versions, 1) == "first"
    page = _text(client.get(reverse("console:policy_version", args=[acme.slug, v4.number])))
    assert page.count("Rolled back to v1 (from v3)") == 1
    assert "rolled back from" not in page.lower() and "rollback to" not in page.lower()


def test_the_note_rollbacks_wrote_for_themselves_is_blanked_and_operators_notes_kept(alice, acme):
    from django.apps import apps

    migration = importlib.import_module("governance.migrations.0007_policyversion_rollback_note")
    _publish(acme, alice, RULES, note="first")
    old = [
        PolicyVersion.objects.create(
            org=acme, number=n, rules=RULES, posture="deny", note=note, rolled_back_from=back
        )
        for n, note, back in [
            (2, "rollback to v1", 1),
            (3, "rollback to v1 because v2 broke the job", 1),
            (4, "rollback to v2", None),
        ]
    ]
    migration.blank_generated_rollback_notes(apps, None)
    assert [PolicyVersion.objects.get(pk=version.pk).note for version in old] == [
        "",
        "rollback to v1 because v2 broke the job",
        "rollback to v2",
    ]
    assert PolicyVersion.objects.get(org=acme, number=1).note == "first"


# --- dry run -------------------------------------------------------------------------------------


def _dry_run(client, **params):
    query = {
        "policy": "draft",
        "method": "tools/call",
        "server": "prod-db",
        "name": "",
        "arguments": "",
        "key": "",
        "key_tags": "",
        "role": "",
        **params,
    }
    return client.get(reverse("console:policy_dry_run"), query)


def test_the_dry_run_shows_the_matching_rule_and_why_each_earlier_rule_was_skipped(
    client, alice, acme
):
    _save(acme, alice, RULES)
    login(client, alice)
    response = _dry_run(client, name="delete_records", arguments='{"table": "orders"}')
    assert response.status_code == 200
    body = _text(response)
    result = re.search(r'data-testid="dry-run-result">(.*?)</section>', body, re.S).group(1)
    assert 'data-action="deny"' in result
    assert 'data-testid="matched-rule">no-prod-deletes</code>' in result
    assert "(position 2 in the draft)" in result
    assert "Deleting on production needs a human" in result
    skips = re.search(r'data-testid="skips">(.*?)</ol>', result, re.S).group(1)
    assert skips.count("<li") == 1
    assert "<code>read-anything</code>" in skips
    assert "tool &#x27;delete_records&#x27;" in skips

    # The same call on a staging server falls through to the last rule.
    body = _text(_dry_run(client, server="staging-db", name="delete_records"))
    result = re.search(r'data-testid="dry-run-result">(.*?)</section>', body, re.S).group(1)
    assert 'data-testid="matched-rule">allow-rest</code>' in result
    skips = re.search(r'data-testid="skips">(.*?)</ol>', result, re.S).group(1)
    assert skips.count("<li") == 3
    assert "server &#x27;staging-db&#x27;" in skips
    assert "30 calls per 60 s per key" not in result


def test_the_dry_run_checks_arguments_and_can_use_a_published_version(client, alice, acme):
    _publish(acme, alice, RULES[2:3])  # v1: only watch-config; no match -> posture deny
    _save(acme, alice, RULES)
    login(client, alice)
    args = '{"path": "/config/app.toml", "content": "x"}'
    body = _text(_dry_run(client, server="dev", name="write_file", arguments=args))
    assert 'data-testid="matched-rule">watch-config</code>' in body
    body = _text(
        _dry_run(client, policy="1", server="dev", name="write_file", arguments='{"path": "/a"}')
    )
    result = re.search(r'data-testid="dry-run-result">(.*?)</section>', body, re.S).group(1)
    assert "No rule matches: the default posture decides" in result
    assert "(version 1)" in result
    skips = re.search(r'data-testid="skips">(.*?)</ol>', result, re.S).group(1)
    assert "<code>watch-config</code>" in skips and "glob &#x27;/config/*&#x27;" in skips
    assert 'data-action="deny"' in result


def test_the_dry_run_refuses_arguments_that_are_not_a_json_object(client, alice, acme):
    _save(acme, alice, RULES)
    login(client, alice)
    body = _text(_dry_run(client, name="echo", arguments="[1, 2]"))
    assert "Give a JSON object" in body
    assert 'data-testid="dry-run-result"' not in body
    body = _text(_dry_run(client, name="echo", arguments="{oops"))
    assert "Not valid JSON" in body


# --- roles ---------------------------------------------------------------------------------------


def test_bob_the_developer_can_edit_publish_and_roll_back(client, bob, acme):
    login(client, bob)
    response = client.post(reverse("console:policy_draft_save"), {"rules": json.dumps(RULES)})
    assert response.status_code == 302
    client.post(reverse("console:policy_publish"), {"note": "by bob"})
    client.post(reverse("console:policy_draft_save"), {"rules": "[]"})
    client.post(reverse("console:policy_publish"), {})
    v1 = PolicyVersion.objects.get(org=acme, number=1)
    client.post(reverse("console:policy_rollback", args=[acme.slug, v1.number]), {})
    assert list(
        PolicyVersion.objects.filter(org=acme).order_by("number").values_list("number", flat=True)
    ) == [1, 2, 3]
    assert PolicyVersion.objects.get(org=acme, number=3).published_by == bob


def test_an_auditor_can_view_policies_but_every_change_is_refused(client, alice, auditor, acme):
    v1 = _publish(acme, alice, RULES)
    login(client, auditor)
    response = client.get(reverse("console:policies"))
    assert response.status_code == 200
    body = _text(response)
    assert 'data-rule-id="no-prod-deletes"' in body
    assert "Save draft" not in body and "Publish as" not in body and "Roll back" not in body
    assert (
        client.get(reverse("console:policy_version", args=[acme.slug, v1.number])).status_code
        == 200
    )
    assert _dry_run(client, name="delete_x").status_code == 200

    before = PendingEvent.objects.count()
    for url, data in [
        (reverse("console:policy_draft_save"), {"rules": "[]"}),
        (reverse("console:policy_publish"), {"note": "x"}),
        (reverse("console:policy_rollback", args=[acme.slug, v1.number]), {}),
    ]:
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert "which cannot" in _text(response)
    assert PolicyDraft.objects.get(org=acme).rules == RULES
    assert PolicyVersion.objects.filter(org=acme).count() == 1
    assert PendingEvent.objects.count() == before


def test_charlie_never_sees_acme_drafts_or_versions(client, alice, acme, charlie, globex):
    acme_v1 = _publish(acme, alice, RULES, note="acme secret note")
    _publish(globex, charlie, [{"id": "globex-only", "action": "allow"}])
    login(client, charlie)
    body = _text(client.get(reverse("console:policies")))
    assert 'data-rule-id="globex-only"' in body
    for rule in RULES:
        assert rule["id"] not in body
    assert "acme secret note" not in body
    assert (
        client.get(reverse("console:policy_version", args=[acme.slug, acme_v1.number])).status_code
        == 404
    )
    response = client.post(reverse("console:policy_rollback", args=[acme.slug, acme_v1.number]), {})
    assert response.status_code == 404
    # globex has a version 1 too: the policy in the address decides whose it is.
    own = client.get(reverse("console:policy_version", args=[globex.slug, 1]))
    assert own.status_code == 200
    assert 'data-rule-id="globex-only"' in _text(own) and "acme secret note" not in _text(own)
    assert PolicyVersion.objects.filter(org=acme).count() == 1
    versions = _text(client.get(reverse("console:policy_versions")))
    assert "acme secret note" not in versions and 'data-version="1"' in versions
    # A dry run only ever sees globex's own rules.
    body = _text(_dry_run(client, name="delete_x"))
    assert 'data-testid="matched-rule">globex-only</code>' in body


# --- query counts --------------------------------------------------------------------------------

# session, user, current membership + org, the user's organisations (switcher)
LAYOUT_QUERIES = 4


def test_the_policies_page_query_count_does_not_grow_with_versions(
    client, alice, acme, acme_key, django_assert_num_queries
):
    for n in range(4):
        _publish(acme, alice, RULES[: n + 1])
    server_create(
        org=acme, actor=alice, name="Prod DB", slug="prod-db", upstream_url="https://db.test/mcp"
    )
    login(client, alice)
    client.get(reverse("console:policies"))
    # layout + draft with editor + versions with publishers + live rules + servers + keys
    with django_assert_num_queries(LAYOUT_QUERIES + 5):
        response = client.get(reverse("console:policies"))
    assert _text(response).count("data-version=") == 4


def test_the_versions_list_query_count_does_not_grow_with_versions(
    client, alice, acme, django_assert_num_queries
):
    for n in range(6):
        _publish(acme, alice, RULES[: n % 4 + 1])
    login(client, alice)
    client.get(reverse("console:policy_versions"))
    # layout + count + page of versions with publishers
    with django_assert_num_queries(LAYOUT_QUERIES + 2):
        response = client.get(reverse("console:policy_versions"))
    body = _text(response)
    assert body.count("data-version=") == 6
    assert re.search(r'data-version="3">.*?<td>3</td>', body, re.S)
