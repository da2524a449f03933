from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from governance.models import AgentSession, SessionState, User


@pytest.fixture
def operator(db):
    return User.objects.create_superuser(email="ops@igris.test", password="operator-password-1")


def test_every_model_of_every_app_is_in_the_admin():
    from django.apps import apps

    missing = [
        f"{m._meta.app_label}.{m.__name__}"
        for app in ("governance", "compliance")
        for m in apps.get_app_config(app).get_models()
        if m not in admin.site._registry
    ]
    assert missing == []


def test_each_changelist_renders_for_a_platform_operator(client, operator, acme, acme_key):
    client.force_login(operator)
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        answer = client.get(url)
        assert answer.status_code == 200, url
    keys = client.get(reverse("admin:governance_apikey_changelist"))
    assert acme_key[1] not in keys.content.decode()


def test_an_operator_can_kill_a_session_from_the_admin(client, operator, acme):
    session = AgentSession.objects.create(
        id="igs_admin1", org=acme, server_slug="demo", era="legacy"
    )
    client.force_login(operator)
    answer = client.post(
        reverse("admin:governance_agentsession_changelist"),
        {"action": "action_kill", "_selected_action": [session.pk]},
    )
    assert answer.status_code == 302
    session.refresh_from_db()
    assert session.state == SessionState.KILLED


def test_a_member_without_staff_rights_cannot_open_the_admin(client, alice):
    client.force_login(alice)
    answer = client.get("/admin/governance/organization/")
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]


def test_the_admin_refuses_audit_retention_below_the_legal_minimum(rf, operator, acme):
    from governance.models import Organization

    request = rf.post("/")
    request.user = operator
    form_class = admin.site._registry[Organization].get_form(request, acme)
    data = {
        "name": acme.name,
        "slug": acme.slug,
        "default_posture": acme.default_posture,
        "audit_retention_days": "30",
        "redact_argument_keys": "[]",
    }
    form = form_class(data, instance=acme)
    assert not form.is_valid()
    assert form.errors["audit_retention_days"] == [
        "30 is below the minimum of 183 days: the EU AI Act (Art. 19 and 26(6)) keeps the logs "
        "of a high-risk AI system for at least six months."
    ]
    acme.refresh_from_db()
    assert acme.audit_retention_days == 400
