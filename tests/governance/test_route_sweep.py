"""Every console route and every admin page, walked as charlie (globex's owner) with acme's
objects: nothing of acme's is shown or changed. The route table is read from the URL
configuration, so a new console route fails this test until it is classified here.

(The REST API has its own table-driven sweep in tests/api/test_tenancy.py, the live feed in
tests/compliance/test_live.py, the proxy in tests/proxy/, ingestion in tests/compliance/
test_ingest.py.)
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from compliance.observe.urls import urlpatterns as observe_urlpatterns
from governance.middleware import SESSION_ORG_KEY
from governance.models import (
    AgentSession,
    Anomaly,
    ApiKey,
    IngestSource,
    Invitation,
    McpServer,
    Membership,
    PendingEvent,
    PolicyVersion,
)
from igris_project.urls import CONSOLE_URLPATTERNS as urlpatterns
from tests.api.conftest import world as world  # acme with one of everything (a fixture)
from tests.conftest import login

pytestmark = pytest.mark.django_db

# Routes addressing one acme object: charlie must get 404 (or 405 for a method the route does
# not take), whichever method he uses.
OBJECT_ROUTES = {
    "member_role": lambda w: [w.bob_member.id],
    "member_remove": lambda w: [w.bob_member.id],
    "invitation_revoke": lambda w: [w.invitation.id],
    "key_revoke": lambda w: [w.key.id],
    "server_edit": lambda w: [w.server.id],
    "server_delete": lambda w: [w.server.id],
    "server_circuit_reset": lambda w: [w.server.id],
    "policy_version": lambda w: [w.server.org.slug, w.version.number],
    "policy_rollback": lambda w: [w.server.org.slug, w.version.number],
    "session_detail": lambda w: [w.session.id],
    "session_kill": lambda w: [w.session.id],
    "session_suspend": lambda w: [w.session.id],
    "session_resume": lambda w: [w.session.id],
    "anomaly_acknowledge": lambda w: [w.anomaly.id],
    "anomaly_resolve": lambda w: [w.anomaly.id],
    "ingest_source_rotate": lambda w: [w.source.id],
    "ingest_source_delete": lambda w: [w.source.id],
    "audit_detail": lambda w: [w.audit_event.seq],
    "audit_event": lambda w: [w.audit_event.id],
}
# Routes on the current organisation (always charlie's own, globex): pages must not show acme.
ORG_PAGES = [
    "home",
    "org_settings",
    "members",
    "keys",
    "key_create",
    "servers",
    "server_create",
    "policies",
    "policy_versions",
    "sessions",
    "anomalies",
    "playground",
    "org_create",
    "ingest_sources",
    "ingest_source_create",
    "audit",
]
# Files streamed from the current organisation's data: they must hold nothing of acme's.
ORG_DOWNLOADS = ["audit_export"]
# Form targets on the current organisation: a POST acts on globex only (checked below through
# what they would change in acme); GET is not how they are used.
ORG_ACTIONS = [
    "org_switch",
    "org_delete",
    "member_invite",
    "member_leave",
    "policy_draft_save",
    "policy_publish",
    "policy_dry_run",
    "sessions_stop",
    "sessions_lift",
]
# A bearer-token route: the token in the mailed link is the credential (tested below).
TOKEN_ROUTES = ["invitation_accept"]


@pytest.fixture(autouse=True)
def _acme_has_an_audit_record(request):
    """The audit routes address a record; `world` gets one of acme's."""
    if "world" not in request.fixturenames:
        return
    from compliance.audit.writer import append_events
    from compliance.models import AuditEvent
    from tests.api.conftest import tool_call

    w = request.getfixturevalue("world")
    org = w.server.org
    append_events([tool_call(org, tool="acme_audited_tool", session_id=w.session.id)])
    w.audit_event = AuditEvent.objects.get(org_id=org.id, tool="acme_audited_tool")


def acme_markers(w) -> list[str]:
    return [
        "Acme",
        "alice@acme.test",
        "bob@acme.test",
        "frank@acme.test",
        "newcomer@acme.test",
        str(w.server.id),
        w.session.id,
        w.key.prefix,
        "deny-delete",
        "portkey prod",
        "acme_audited_tool",
    ]


# Console pages outside the "console" namespace, by their full URL name: charlie's must show
# nothing of acme's (the dashboard's own cross-tenant tests are in tests/compliance/).
OTHER_ORG_PAGES = ["observe:dashboard"]


def test_every_observe_route_is_classified():
    names = {f"observe:{p.name}" for p in observe_urlpatterns}
    assert names == set(OTHER_ORG_PAGES), names ^ set(OTHER_ORG_PAGES)


@pytest.mark.parametrize("name", OTHER_ORG_PAGES)
def test_charlie_s_other_pages_show_nothing_of_acme(client, charlie, globex, world, name):
    login(client, charlie)
    response = client.get(reverse(name))
    assert response.status_code == 200
    body = response.content.decode()
    for marker in acme_markers(world):
        assert marker not in body, (name, marker)


def test_every_console_route_is_classified():
    names = {p.name for p in urlpatterns}
    classified = (
        set(OBJECT_ROUTES)
        | set(ORG_PAGES)
        | set(ORG_ACTIONS)
        | set(TOKEN_ROUTES)
        | set(ORG_DOWNLOADS)
    )
    assert names == classified, (names - classified, classified - names)


@pytest.mark.parametrize("name", sorted(OBJECT_ROUTES))
def test_charlie_cannot_reach_an_acme_object_on_any_route(client, charlie, globex, world, name):
    login(client, charlie)
    url = reverse(f"console:{name}", args=OBJECT_ROUTES[name](world))
    outbox = PendingEvent.objects.count()
    statuses = set()
    for method in ("get", "post"):
        response = getattr(client, method)(url, {"role": "owner", "note": "x", "reason": "x"})
        statuses.add(response.status_code)
        assert response.status_code in {404, 405}, (method, url, response.status_code)
        body = response.content.decode()
        for marker in acme_markers(world):
            assert marker not in body, (method, url, marker)
    assert 404 in statuses
    assert PendingEvent.objects.count() == outbox  # nothing was changed, nothing audited


def test_nothing_of_acme_changed_after_the_sweep(client, charlie, globex, world):
    login(client, charlie)
    for name, args in OBJECT_ROUTES.items():
        client.post(reverse(f"console:{name}", args=args(world)), {"role": "owner"})
    for name in ORG_ACTIONS:
        client.post(reverse(f"console:{name}"), {"org": str(world.server.org_id)})
    assert Membership.objects.get(pk=world.bob_member.pk).role == "developer"
    assert Invitation.objects.get(pk=world.invitation.pk).revoked_at is None
    assert ApiKey.objects.get(pk=world.key.pk).revoked_at is None
    assert McpServer.objects.filter(pk=world.server.pk).exists()
    assert AgentSession.objects.get(pk=world.session.pk).state == "active"
    assert Anomaly.objects.get(pk=world.anomaly.pk).status == "open"
    assert PolicyVersion.objects.filter(org=world.server.org).count() == 1
    source = IngestSource.objects.get(pk=world.source.pk)
    assert source.rotated_at is None
    # org_switch to acme was refused: charlie's pages still show globex.
    assert client.session.get(SESSION_ORG_KEY) != str(world.server.org_id)


@pytest.mark.parametrize("name", ORG_PAGES)
def test_charlie_s_pages_show_nothing_of_acme(client, charlie, globex, world, name):
    login(client, charlie)
    response = client.get(reverse(f"console:{name}"))
    assert response.status_code == 200
    body = response.content.decode()
    for marker in acme_markers(world):
        assert marker not in body, (name, marker)


@pytest.mark.parametrize("name", ORG_DOWNLOADS)
@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_charlie_s_downloads_hold_nothing_of_acme(client, charlie, globex, world, name, kind):
    login(client, charlie)
    response = client.get(reverse(f"console:{name}"), {"format": kind})
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    for marker in acme_markers(world):
        assert marker not in body, (name, marker)


def test_an_invitation_link_cannot_be_used_by_someone_else(client, charlie, acme, alice):
    from governance.services.members import invitation_create

    _invitation, token = invitation_create(
        org=acme, actor=alice, email="dave@acme.test", role="developer"
    )
    login(client, charlie)
    response = client.post(reverse("console:invitation_accept", args=[token]))
    assert response.status_code == 200  # the page explains; nothing is joined
    assert not Membership.objects.filter(org=acme, user=charlie).exists()


def _admin_urls(w) -> list[str]:
    objects = {
        AgentSession: w.session.pk,
        Anomaly: w.anomaly.pk,
        ApiKey: w.key.pk,
        Invitation: w.invitation.pk,
        McpServer: w.server.pk,
        Membership: w.bob_member.pk,
        PolicyVersion: w.version.pk,
    }
    urls = []
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        if model in objects:
            urls.append(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[objects[model]])
            )
    return urls


def test_no_admin_page_opens_for_an_organisation_owner(client, charlie, globex, world):
    """The admin is for platform operators (staff) only; an organisation's owner gets the admin
    login page on every model's list and on acme's objects, and sees nothing of acme."""
    login(client, charlie)
    urls = _admin_urls(world)
    assert len(urls) > 10
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    for marker in acme_markers(world):
        assert marker not in client.get(urls[0], follow=True).content.decode()
