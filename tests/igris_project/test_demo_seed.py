"""The demo organisation that `make run` seeds (igris_project/demo/seed.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from django.db import connection

from governance.keys import KeyError_, verify_key_sync
from igris_project.demo.seed import seed_demo

UPSTREAM = "http://127.0.0.1:9/mcp"


def _seed(tmp_path: Path):
    return seed_demo(
        base_url="http://127.0.0.1:3300",
        upstream_url=UPSTREAM,
        state_path=tmp_path / "demo.json",
    )


def _verify_elsewhere(token: str) -> str:
    """Verify a key on another thread, so on another database connection: what a web process
    sees, not the seeding transaction."""
    outcome: list[str] = []

    def run() -> None:
        try:
            outcome.append(verify_key_sync(token)[1].id)
        except KeyError_ as exc:
            outcome.append(f"refused: {exc.reason}")
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0]


@pytest.mark.django_db(transaction=True)
def test_the_demo_key_is_committed_before_it_is_written_to_demo_json(tmp_path, monkeypatch):
    state_path = tmp_path / "demo.json"
    seen_when_written: list[str] = []
    write_text = Path.write_text

    def spy(self: Path, data: str, *args, **kwargs):
        if self == state_path:
            seen_when_written.append(_verify_elsewhere(json.loads(data)["api_key"]))
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spy)
    info = _seed(tmp_path)
    assert len(seen_when_written) == 1
    assert not seen_when_written[0].startswith("refused"), seen_when_written[0]
    assert json.loads(state_path.read_text())["api_key"] == info.api_key


@pytest.mark.django_db(transaction=True)
def test_a_restart_keeps_the_demo_key_and_login_that_still_work(tmp_path):
    first = _seed(tmp_path)
    second = _seed(tmp_path)
    assert (second.api_key, second.password) == (first.api_key, first.password)
    assert not _verify_elsewhere(second.api_key).startswith("refused")


# --- the starter policy -----------------------------------------------------------------------


def _decide(version, tool: str):
    from datetime import UTC, datetime

    from governance.policy import PolicySnapshot
    from governance.policy.context import CallContext

    compiled = PolicySnapshot.from_documents(
        org_id=str(version.org_id),
        version=version.number,
        posture=version.posture,
        documents=version.rules,
    )
    call = CallContext(
        org_id=str(version.org_id),
        server_slug="demo-tools",
        method="tools/call",
        name=tool,
        arguments={},
        now=datetime.now(UTC),
    )
    return compiled.decide(call)


@pytest.mark.django_db
def test_the_demo_starts_with_a_published_policy_that_denies_deletes_and_flags_writes(tmp_path):
    from governance.models import Organization, PendingEvent, PolicyVersion

    info = _seed(tmp_path)
    org = Organization.objects.get(slug="demo")
    [version] = PolicyVersion.objects.filter(org=org)
    assert (version.number, version.posture) == (1, "allow")
    assert version.note == "starter policy seeded by make run"
    assert version.published_by.email == info.email

    deny = _decide(version, "delete_records")
    assert (deny.action, deny.rule_id) == ("deny", "no-record-deletes")
    assert "not allowed by the demo policy" in deny.message
    alert = _decide(version, "write_file")
    assert (alert.action, alert.rule_id) == ("alert", "alert-on-file-writes")
    for tool in ("echo", "add", "query_records", "read_file", "slow"):
        assert _decide(version, tool).action == "allow", tool

    # Published through the policy services: drafted, then a numbered version, each audited.
    types = list(PendingEvent.objects.filter(org_id=org.id).values_list("payload__type", flat=True))
    assert "policy.draft_updated" in types and "policy.published" in types
    assert info.policy.startswith("v1: delete_records denied, write_file raises an alert")


@pytest.mark.django_db
def test_a_demo_organisation_from_an_older_var_gets_the_starter_policy(tmp_path):
    from governance.models import Organization, PolicyVersion, User
    from governance.services.organizations import organization_create

    owner = User.objects.create_user(email="demo@igris.local", password="an-old-password-1")
    organization_create(name="Demo Org", owner=owner, slug="demo")
    _seed(tmp_path)
    org = Organization.objects.get(slug="demo")
    assert PolicyVersion.objects.filter(org=org).count() == 1


@pytest.mark.django_db
def test_a_restart_keeps_the_policy_the_user_published(tmp_path):
    from governance.models import Organization, PolicyVersion, User
    from governance.services.policies import policy_draft_update, policy_publish

    _seed(tmp_path)
    org = Organization.objects.get(slug="demo")
    user = User.objects.get(email="demo@igris.local")
    mine = [{"id": "only-echo", "action": "deny", "match": {"tools": ["add"]}}]
    policy_draft_update(org=org, actor=user, rules=mine)
    policy_publish(org=org, actor=user, note="mine")
    info = _seed(tmp_path)
    latest = PolicyVersion.objects.filter(org=org).order_by("-number").first()
    assert (latest.number, latest.rules) == (2, mine)
    assert info.policy == "v2: 1 rules, default allow"


def test_the_banner_names_the_admin_the_policy_and_the_upstream_log(tmp_path, settings):
    from io import StringIO

    from igris_project.demo.seed import DemoInfo
    from igris_project.management.commands.igris_run import Command

    settings.VAR_DIR = tmp_path
    info = DemoInfo(
        console_url="http://127.0.0.1:3300/",
        admin_url="http://127.0.0.1:3300/admin/",
        email="demo@igris.local",
        password="pw",
        api_key="ig_x",
        proxy_url="http://127.0.0.1:3300/proxy/demo-tools/mcp",
        server_slug="demo-tools",
        upstream_url=UPSTREAM,
        policy="v1: delete_records denied, write_file raises an alert, every other call allowed",
    )
    out = StringIO()
    Command(stdout=out)._banner(info)
    banner = out.getvalue()
    assert "Admin        http://127.0.0.1:3300/admin/" in banner
    assert f"Policy       {info.policy}" in banner
    assert f"Upstream log {tmp_path / 'demo-upstream.log'}" in banner


# --- Django admin ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_demo_login_opens_the_admin_and_reads_every_igris_table(client, tmp_path):
    from django.contrib import admin
    from django.urls import reverse

    info = _seed(tmp_path)
    assert client.login(email=info.email, password=info.password)
    assert client.get("/admin/").status_code == 200
    for model in admin.site._registry:
        if model._meta.app_label not in ("governance", "compliance"):
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_the_demo_login_changes_nothing_through_the_admin_and_is_not_a_superuser(client, tmp_path):
    from django.urls import reverse

    from governance.models import Organization, User

    info = _seed(tmp_path)
    user = User.objects.get(email=info.email)
    assert user.is_staff and not user.is_superuser
    client.login(email=info.email, password=info.password)
    org = Organization.objects.get(slug="demo")
    change = reverse("admin:governance_organization_change", args=[org.pk])
    answer = client.post(change, {"name": "Renamed", "slug": "demo"})
    assert answer.status_code == 403
    assert Organization.objects.get(pk=org.pk).name == "Demo Org"
    assert client.get(reverse("admin:governance_user_add")).status_code == 403
    assert client.get(reverse("admin:socialaccount_socialapp_changelist")).status_code == 403


@pytest.mark.django_db
def test_the_demo_login_can_kill_a_demo_session_from_the_admin(client, tmp_path):
    from django.urls import reverse

    from governance.models import AgentSession, Organization, SessionState

    info = _seed(tmp_path)
    org = Organization.objects.get(slug="demo")
    session = AgentSession.objects.create(
        id="igs_demo1", org=org, server_slug="demo-tools", era="legacy"
    )
    client.login(email=info.email, password=info.password)
    answer = client.post(
        reverse("admin:governance_agentsession_changelist"),
        {"action": "action_kill", "_selected_action": [session.pk]},
    )
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.state == SessionState.KILLED
