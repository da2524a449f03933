from __future__ import annotations

import pytest

from governance.permissions import PERMISSIONS, Action, PermissionDenied, Role, require, role_can

A = Action
# The documented table, written out independently of the implementation: role -> allowed actions.
EXPECTED: dict[str, set[Action]] = {
    "owner": set(Action),
    "admin": {
        A.ORG_VIEW,
        A.ORG_UPDATE,
        A.BILLING_VIEW,
        A.MEMBERS_VIEW,
        A.MEMBERS_MANAGE,
        A.KEYS_VIEW,
        A.KEYS_MANAGE_OWN,
        A.KEYS_MANAGE_ALL,
        A.SERVERS_VIEW,
        A.SERVERS_MANAGE,
        A.POLICIES_VIEW,
        A.POLICIES_MANAGE,
        A.SESSIONS_VIEW,
        A.SESSIONS_KILL,
        A.ANOMALIES_VIEW,
        A.ANOMALIES_MANAGE,
        A.AUDIT_READ,
        A.COMPLIANCE_VIEW,
        A.COMPLIANCE_MANAGE,
        A.PLAYGROUND_USE,
    },
    "developer": {
        A.ORG_VIEW,
        A.MEMBERS_VIEW,
        A.KEYS_VIEW,
        A.KEYS_MANAGE_OWN,
        A.SERVERS_VIEW,
        A.SERVERS_MANAGE,
        A.POLICIES_VIEW,
        A.POLICIES_MANAGE,
        A.SESSIONS_VIEW,
        A.ANOMALIES_VIEW,
        A.AUDIT_READ,
        A.PLAYGROUND_USE,
    },
    "ciso": {
        A.ORG_VIEW,
        A.BILLING_VIEW,
        A.MEMBERS_VIEW,
        A.KEYS_VIEW,
        A.SERVERS_VIEW,
        A.POLICIES_VIEW,
        A.POLICIES_MANAGE,
        A.SESSIONS_VIEW,
        A.SESSIONS_KILL,
        A.ANOMALIES_VIEW,
        A.ANOMALIES_MANAGE,
        A.AUDIT_READ,
        A.COMPLIANCE_VIEW,
        A.COMPLIANCE_MANAGE,
    },
    "auditor": {
        A.ORG_VIEW,
        A.MEMBERS_VIEW,
        A.SERVERS_VIEW,
        A.POLICIES_VIEW,
        A.SESSIONS_VIEW,
        A.ANOMALIES_VIEW,
        A.AUDIT_READ,
        A.COMPLIANCE_VIEW,
    },
}


@pytest.mark.parametrize("role", [r.value for r in Role])
@pytest.mark.parametrize("action", list(Action))
def test_every_role_and_action_follows_the_documented_table(role, action):
    assert role_can(role, action) is (action in EXPECTED[role])


def test_the_table_covers_every_role():
    assert set(PERMISSIONS) == set(Role)


@pytest.mark.parametrize("role", [None, "", "superuser", "OWNER"])
def test_unknown_roles_may_do_nothing(role):
    assert not any(role_can(role, action) for action in Action)


def test_require_raises_naming_the_action():
    with pytest.raises(PermissionDenied, match="auditor may not members.manage"):
        require("auditor", Action.MEMBERS_MANAGE)


def test_only_the_owner_may_delete_the_organisation_or_manage_billing():
    for role in Role:
        assert role_can(role, Action.ORG_DELETE) is (role == Role.OWNER)
        assert role_can(role, Action.BILLING_MANAGE) is (role == Role.OWNER)
