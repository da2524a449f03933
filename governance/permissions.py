"""The one permission table: which member role may do what.

Used by the console views, the REST API and the Django admin, and printed in the README. A role
is granted a set of actions; every check goes through `role_can` / `require`.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    CISO = "ciso"
    AUDITOR = "auditor"


class Action(StrEnum):
    ORG_VIEW = "org.view"
    ORG_UPDATE = "org.update"
    ORG_DELETE = "org.delete"
    BILLING_VIEW = "billing.view"
    BILLING_MANAGE = "billing.manage"
    MEMBERS_VIEW = "members.view"
    MEMBERS_MANAGE = "members.manage"
    KEYS_VIEW = "keys.view"
    KEYS_MANAGE_OWN = "keys.manage_own"
    KEYS_MANAGE_ALL = "keys.manage_all"
    SERVERS_VIEW = "servers.view"
    SERVERS_MANAGE = "servers.manage"
    POLICIES_VIEW = "policies.view"
    POLICIES_MANAGE = "policies.manage"
    SESSIONS_VIEW = "sessions.view"
    SESSIONS_KILL = "sessions.kill"
    ANOMALIES_VIEW = "anomalies.view"
    ANOMALIES_MANAGE = "anomalies.manage"
    AUDIT_READ = "audit.read"
    COMPLIANCE_VIEW = "compliance.view"
    COMPLIANCE_MANAGE = "compliance.manage"
    PLAYGROUND_USE = "playground.use"


A = Action
_READ_ONLY = {
    A.ORG_VIEW,
    A.MEMBERS_VIEW,
    A.SERVERS_VIEW,
    A.POLICIES_VIEW,
    A.SESSIONS_VIEW,
    A.ANOMALIES_VIEW,
    A.AUDIT_READ,
    A.COMPLIANCE_VIEW,
}

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.ADMIN: frozenset(
        _READ_ONLY
        | {
            A.ORG_UPDATE,
            A.BILLING_VIEW,
            A.MEMBERS_MANAGE,
            A.KEYS_VIEW,
            A.KEYS_MANAGE_OWN,
            A.KEYS_MANAGE_ALL,
            A.SERVERS_MANAGE,
            A.POLICIES_MANAGE,
            A.SESSIONS_KILL,
            A.ANOMALIES_MANAGE,
            A.COMPLIANCE_MANAGE,
            A.PLAYGROUND_USE,
        }
    ),
    Role.DEVELOPER: frozenset(
        _READ_ONLY - {A.COMPLIANCE_VIEW}
        | {
            A.KEYS_VIEW,
            A.KEYS_MANAGE_OWN,
            A.SERVERS_MANAGE,
            A.POLICIES_MANAGE,
            A.PLAYGROUND_USE,
        }
    ),
    Role.CISO: frozenset(
        _READ_ONLY
        | {
            A.BILLING_VIEW,
            A.KEYS_VIEW,
            A.POLICIES_MANAGE,
            A.SESSIONS_KILL,
            A.ANOMALIES_MANAGE,
            A.COMPLIANCE_MANAGE,
        }
    ),
    Role.AUDITOR: frozenset(_READ_ONLY),
}

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.OWNER: "Everything, including billing and deleting the organisation.",
    Role.ADMIN: "Members, API keys, servers, policies, sessions, anomalies and compliance.",
    Role.DEVELOPER: "Servers, policies, own API keys, the tool playground; reads audit.",
    Role.CISO: "Policies, sessions (kill), anomalies, compliance; reads audit and keys.",
    Role.AUDITOR: "Read-only: settings, audit log, sessions, anomalies, compliance artifacts.",
}


class PermissionDenied(Exception):
    def __init__(self, action: Action, role: str | None) -> None:
        super().__init__(f"role {role or 'none'} may not {action.value}")
        self.action = action
        self.role = role


def role_can(role: str | None, action: Action) -> bool:
    if role is None:
        return False
    try:
        return action in PERMISSIONS[Role(role)]
    except ValueError:
        return False


def require(role: str | None, action: Action) -> None:
    if not role_can(role, action):
        raise PermissionDenied(action, role)
