"""Charlie (globex) never sees or touches acme's objects: another organisation's object is a 404,
never a 403, and no list shows it."""

from __future__ import annotations

import pytest

from tests.api.conftest import outbox_count, send
from tests.api.endpoints import DETAIL_ENDPOINTS, ENDPOINTS, LIST_ENDPOINTS, ids

pytestmark = pytest.mark.django_db

NOT_LISTS = {"audit-events/export/", "organization/", "policies/draft/", "audit/verify/"}
LISTS = [e for e in LIST_ENDPOINTS if e.path not in NOT_LISTS]


@pytest.mark.parametrize("endpoint", DETAIL_ENDPOINTS, ids=ids(DETAIL_ENDPOINTS))
def test_another_organisations_object_is_not_found(charlie_api, world, endpoint):
    before = outbox_count()
    response = send(charlie_api, endpoint, world)
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"
    assert outbox_count() == before


@pytest.mark.parametrize("endpoint", LISTS, ids=ids(LISTS))
def test_lists_never_show_another_organisations_objects(charlie_api, api, world, endpoint):
    from compliance.audit.writer import drain_outbox

    drain_outbox()
    acme_body = send(api, endpoint, world).json()
    globex_body = send(charlie_api, endpoint, world).json()
    acme_ids = {str(item.get("id", item.get("number"))) for item in acme_body["results"]}
    assert acme_ids, "acme has objects in this list"
    globex_ids = {str(item.get("id", item.get("number"))) for item in globex_body["results"]}
    # Numbers are per organisation (policy versions): globex has none of its own here.
    assert not acme_ids & globex_ids or endpoint.path == "policies/versions/"
    if endpoint.path == "policies/versions/":
        assert globex_body["results"] == []


def test_the_organisation_is_the_keys_own(charlie_api, api, world, globex):
    assert charlie_api.get("organization/").json()["id"] == str(globex.id)
    assert api.get("organization/").json()["slug"] == "acme"


def test_kill_all_for_another_organisations_key_or_server_is_not_found(charlie_api, world):
    from governance.models import AgentSession

    for scope, target in (("key", world.key.id), ("server", world.server.id)):
        response = charlie_api.post("sessions/kill-all/", {"scope": scope, "id": str(target)})
        assert response.status_code == 404
    assert AgentSession.objects.get(pk=world.session.pk).state == "active"


def test_an_api_key_may_not_be_limited_to_another_organisations_server(charlie_api, world):
    response = charlie_api.post(
        "api-keys/",
        {"name": "sneaky", "scopes": ["proxy"], "allowed_servers": [str(world.server.id)]},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "allowed_servers"


def test_audit_events_and_exports_are_the_organisations_own(charlie_api, api, world, acme, globex):
    from compliance.audit.writer import append_events
    from tests.api.conftest import tool_call

    append_events([tool_call(acme, tool="acme_tool"), tool_call(globex, tool="globex_tool")])
    listed = charlie_api.get("audit-events/").json()["results"]
    assert [e["tool"] for e in listed] == ["globex_tool"]
    export = b"".join(charlie_api.get("audit-events/export/", format="ndjson").streaming_content)
    assert b"globex_tool" in export
    assert b"acme_tool" not in export


def test_every_endpoint_is_in_the_table_once():
    assert len({str(e) for e in ENDPOINTS}) == len(ENDPOINTS)
