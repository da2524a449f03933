"""The console's pages (namespace "console"). POST-only routes change state; GET routes read."""

from __future__ import annotations

from django.urls import path

from governance.views import anomalies as anomaly_views
from governance.views import ingest as ingest_views
from governance.views import keys as key_views
from governance.views import members as member_views
from governance.views import orgs as org_views
from governance.views import playground as playground_views
from governance.views import policies as policy_views
from governance.views import policy_versions as policy_version_views
from governance.views import servers as server_views
from governance.views import sessions as session_views

app_name = "console"

urlpatterns = [
    path("", org_views.home, name="home"),
    # organisations
    path("orgs/new/", org_views.org_create, name="org_create"),
    path("orgs/switch/", org_views.org_switch, name="org_switch"),
    path("settings/", org_views.org_settings, name="org_settings"),
    path("settings/delete/", org_views.org_delete, name="org_delete"),
    # members and invitations
    path("members/", member_views.members, name="members"),
    path("members/invite/", member_views.member_invite, name="member_invite"),
    path("members/leave/", member_views.member_leave, name="member_leave"),
    path("members/<int:membership_id>/role/", member_views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", member_views.member_remove, name="member_remove"),
    path(
        "members/invitations/<uuid:invitation_id>/revoke/",
        member_views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/<str:token>/", member_views.invitation_accept, name="invitation_accept"),
    # API keys
    path("keys/", key_views.keys, name="keys"),
    path("keys/new/", key_views.key_create, name="key_create"),
    path("keys/<uuid:key_id>/revoke/", key_views.key_revoke, name="key_revoke"),
    # ingest sources (other gateways sending events)
    path("ingest/", ingest_views.ingest_sources, name="ingest_sources"),
    path("ingest/new/", ingest_views.ingest_source_create, name="ingest_source_create"),
    path(
        "ingest/<uuid:source_id>/rotate/",
        ingest_views.ingest_source_rotate,
        name="ingest_source_rotate",
    ),
    path(
        "ingest/<uuid:source_id>/delete/",
        ingest_views.ingest_source_delete,
        name="ingest_source_delete",
    ),
    # MCP servers
    path("servers/", server_views.servers, name="servers"),
    path("servers/new/", server_views.server_create, name="server_create"),
    path("servers/<uuid:server_id>/edit/", server_views.server_edit, name="server_edit"),
    path("servers/<uuid:server_id>/delete/", server_views.server_delete, name="server_delete"),
    path(
        "servers/<uuid:server_id>/reset-circuit/",
        server_views.server_circuit_reset,
        name="server_circuit_reset",
    ),
    # policies
    path("policies/", policy_views.policies, name="policies"),
    path("policies/draft/", policy_views.policy_draft_save, name="policy_draft_save"),
    path("policies/publish/", policy_views.policy_publish, name="policy_publish"),
    path("policies/dry-run/", policy_views.policy_dry_run, name="policy_dry_run"),
    path("policies/versions/", policy_version_views.policy_versions, name="policy_versions"),
    # A version is addressed by its policy and its number, as people speak of it (/policies/acme/
    # versions/2/ is acme's v2), never by a database id. An organisation has one policy, named by
    # the organisation's slug.
    path(
        "policies/<slug:org_slug>/versions/<int:number>/",
        policy_version_views.policy_version,
        name="policy_version",
    ),
    path(
        "policies/<slug:org_slug>/versions/<int:number>/rollback/",
        policy_version_views.policy_rollback,
        name="policy_rollback",
    ),
    # agent sessions and stops
    path("sessions/", session_views.sessions, name="sessions"),
    path("sessions/stop/", session_views.sessions_stop, name="sessions_stop"),
    path("sessions/lift/", session_views.sessions_lift, name="sessions_lift"),
    path("sessions/<str:session_id>/", session_views.session_detail, name="session_detail"),
    path("sessions/<str:session_id>/kill/", session_views.session_kill, name="session_kill"),
    path(
        "sessions/<str:session_id>/suspend/", session_views.session_suspend, name="session_suspend"
    ),
    path("sessions/<str:session_id>/resume/", session_views.session_resume, name="session_resume"),
    # anomalies
    path("anomalies/", anomaly_views.anomalies, name="anomalies"),
    path(
        "anomalies/<int:anomaly_id>/acknowledge/",
        anomaly_views.anomaly_acknowledge_view,
        name="anomaly_acknowledge",
    ),
    path(
        "anomalies/<int:anomaly_id>/resolve/",
        anomaly_views.anomaly_resolve_view,
        name="anomaly_resolve",
    ),
    # tool playground
    path("playground/", playground_views.playground, name="playground"),
]
