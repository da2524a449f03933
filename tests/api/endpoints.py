"""Every API v1 operation with a valid request and the role action it needs (from the role
table), for the table-driven permission, scope, tenancy and bad-input tests.

`test_the_endpoint_table_covers_every_operation_in_the_schema` keeps it complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from governance.permissions import Action as A

REPLAY = {"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    action: A
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    read_scope_post: bool = False  # a POST that changes nothing (needs read, not write)
    admin: bool = False  # with a key, also needs the admin scope

    @property
    def safe(self) -> bool:
        return self.method == "get" or self.read_scope_post

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


ENDPOINTS = [
    Endpoint("get", "organization/", A.ORG_VIEW),
    Endpoint("patch", "organization/", A.ORG_UPDATE, {"name": "Acme Ltd"}),
    Endpoint("get", "members/", A.MEMBERS_VIEW),
    Endpoint("get", "members/{member}/", A.MEMBERS_VIEW),
    Endpoint("patch", "members/{member}/", A.MEMBERS_MANAGE, {"role": "developer"}, admin=True),
    Endpoint("delete", "members/{member}/", A.MEMBERS_MANAGE, admin=True),
    Endpoint("get", "invitations/", A.MEMBERS_MANAGE),
    Endpoint(
        "post",
        "invitations/",
        A.MEMBERS_MANAGE,
        {"email": "someone@acme.test", "role": "auditor"},
        admin=True,
    ),
    Endpoint("get", "invitations/{invitation}/", A.MEMBERS_MANAGE),
    Endpoint("delete", "invitations/{invitation}/", A.MEMBERS_MANAGE, admin=True),
    Endpoint("get", "api-keys/", A.KEYS_VIEW),
    Endpoint(
        "post", "api-keys/", A.KEYS_MANAGE_OWN, {"name": "ci", "scopes": ["read"]}, admin=True
    ),
    Endpoint("get", "api-keys/{key}/", A.KEYS_VIEW),
    Endpoint("get", "ingest-sources/", A.KEYS_VIEW),
    Endpoint(
        "post",
        "ingest-sources/",
        A.KEYS_MANAGE_OWN,
        {"name": "helicone", "provider": "helicone"},
        admin=True,
    ),
    Endpoint("get", "ingest-sources/{source}/", A.KEYS_VIEW),
    Endpoint("delete", "ingest-sources/{source}/", A.KEYS_MANAGE_ALL, admin=True),
    Endpoint("post", "ingest-sources/{source}/rotate/", A.KEYS_MANAGE_ALL, admin=True),
    Endpoint("delete", "api-keys/{key}/", A.KEYS_MANAGE_OWN, admin=True),
    Endpoint("get", "servers/", A.SERVERS_VIEW),
    Endpoint(
        "post",
        "servers/",
        A.SERVERS_MANAGE,
        {"name": "Search", "slug": "search", "upstream_url": "http://127.0.0.1:9/mcp"},
    ),
    Endpoint("get", "servers/{server}/", A.SERVERS_VIEW),
    Endpoint("patch", "servers/{server}/", A.SERVERS_MANAGE, {"description": "files"}),
    Endpoint("delete", "servers/{server}/", A.SERVERS_MANAGE),
    Endpoint("post", "servers/{server}/test/", A.SERVERS_MANAGE, {}),
    Endpoint("post", "servers/{server}/refresh-tools/", A.SERVERS_MANAGE, {}),
    Endpoint("post", "servers/{server}/reset-circuit/", A.SERVERS_MANAGE, {}),
    Endpoint("get", "tools/", A.SERVERS_VIEW),
    Endpoint("get", "tools/{tool}/", A.SERVERS_VIEW),
    Endpoint("post", "tools/{tool}/approve/", A.SERVERS_MANAGE, {}),
    Endpoint("get", "policies/draft/", A.POLICIES_VIEW),
    Endpoint("put", "policies/draft/", A.POLICIES_MANAGE, {"rules": []}),
    Endpoint("post", "policies/publish/", A.POLICIES_MANAGE, {"note": "again"}),
    Endpoint("get", "policies/versions/", A.POLICIES_VIEW),
    Endpoint("get", "policies/versions/{version}/", A.POLICIES_VIEW),
    Endpoint("get", "policies/versions/{version}/diff/{version}/", A.POLICIES_VIEW),
    Endpoint("post", "policies/versions/{version}/rollback/", A.POLICIES_MANAGE, {}),
    Endpoint(
        "post",
        "policies/simulate/",
        A.POLICIES_VIEW,
        {"server": "files", "tool": "delete_x"},
        read_scope_post=True,
    ),
    Endpoint("post", "policies/replay/", A.POLICIES_VIEW, REPLAY, read_scope_post=True),
    Endpoint("get", "sessions/", A.SESSIONS_VIEW),
    Endpoint("get", "sessions/{session}/", A.SESSIONS_VIEW),
    Endpoint("post", "sessions/{session}/kill/", A.SESSIONS_KILL, {"reason": "test"}),
    Endpoint("post", "sessions/{session}/suspend/", A.SESSIONS_KILL, {"reason": "test"}),
    Endpoint("post", "sessions/{session}/resume/", A.SESSIONS_KILL, {}),
    Endpoint("post", "sessions/kill-all/", A.SESSIONS_KILL, {"scope": "server", "id": "{server}"}),
    Endpoint("get", "anomalies/", A.ANOMALIES_VIEW),
    Endpoint("get", "anomalies/{anomaly}/", A.ANOMALIES_VIEW),
    Endpoint("post", "anomalies/{anomaly}/acknowledge/", A.ANOMALIES_MANAGE, {}),
    Endpoint("post", "anomalies/{anomaly}/resolve/", A.ANOMALIES_MANAGE, {"note": "benign"}),
    Endpoint("get", "audit-events/", A.AUDIT_READ),
    Endpoint("get", "audit-events/export/", A.AUDIT_READ, params={"format": "csv"}),
    Endpoint("get", "audit/verify/", A.COMPLIANCE_VIEW),
]

DETAIL_ENDPOINTS = [e for e in ENDPOINTS if "{" in e.path]
LIST_ENDPOINTS = [e for e in ENDPOINTS if e.method == "get" and "{" not in e.path]


def ids(endpoints: list[Endpoint]) -> list[str]:
    return [str(e) for e in endpoints]
