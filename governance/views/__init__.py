"""The server-rendered console: one module per area, sharing `base` (guard, layout, errors)."""

from __future__ import annotations

from governance.views.keys import key_create, key_revoke, keys
from governance.views.members import (
    invitation_accept,
    invitation_revoke,
    member_invite,
    member_leave,
    member_remove,
    member_role,
    members,
)
from governance.views.orgs import home, org_create, org_delete, org_settings, org_switch
from governance.views.servers import (
    server_circuit_reset,
    server_create,
    server_delete,
    server_edit,
    servers,
)

__all__ = [
    "home",
    "invitation_accept",
    "invitation_revoke",
    "key_create",
    "key_revoke",
    "keys",
    "member_invite",
    "member_leave",
    "member_remove",
    "member_role",
    "members",
    "org_create",
    "org_delete",
    "org_settings",
    "org_switch",
    "server_circuit_reset",
    "server_create",
    "server_delete",
    "server_edit",
    "servers",
]
