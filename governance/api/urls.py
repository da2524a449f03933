"""Routes of the governance resources under /api/v1/ (included by igris_project/api_urls.py)."""

from __future__ import annotations

from django.urls import path

from governance.api.views import (
    anomalies,
    ingest_sources,
    keys,
    members,
    organization,
    policies,
    servers,
    sessions,
    tools,
)

urlpatterns = [
    path("organization/", organization.OrganizationView.as_view(), name="organization"),
    path("members/", members.MemberListView.as_view(), name="members"),
    path("members/<str:member_id>/", members.MemberDetailView.as_view(), name="member"),
    path("invitations/", members.InvitationListView.as_view(), name="invitations"),
    path(
        "invitations/<str:invitation_id>/",
        members.InvitationDetailView.as_view(),
        name="invitation",
    ),
    path("api-keys/", keys.ApiKeyListView.as_view(), name="api_keys"),
    path("api-keys/<str:key_id>/", keys.ApiKeyDetailView.as_view(), name="api_key"),
    path("ingest-sources/", ingest_sources.IngestSourceListView.as_view(), name="ingest_sources"),
    path(
        "ingest-sources/<str:source_id>/",
        ingest_sources.IngestSourceDetailView.as_view(),
        name="ingest_source",
    ),
    path(
        "ingest-sources/<str:source_id>/rotate/",
        ingest_sources.IngestSourceRotateView.as_view(),
        name="ingest_source_rotate",
    ),
    path("servers/", servers.ServerListView.as_view(), name="servers"),
    path("servers/<str:server_id>/", servers.ServerDetailView.as_view(), name="server"),
    path("servers/<str:server_id>/test/", servers.ServerTestView.as_view(), name="server_test"),
    path(
        "servers/<str:server_id>/reset-circuit/",
        servers.ServerResetCircuitView.as_view(),
        name="server_reset_circuit",
    ),
    path(
        "servers/<str:server_id>/refresh-tools/",
        servers.ServerRefreshToolsView.as_view(),
        name="server_refresh_tools",
    ),
    path("tools/", tools.ToolListView.as_view(), name="tools"),
    path("tools/<str:tool_id>/", tools.ToolDetailView.as_view(), name="tool"),
    path("tools/<str:tool_id>/approve/", tools.ToolApproveView.as_view(), name="tool_approve"),
    path("policies/draft/", policies.PolicyDraftView.as_view(), name="policy_draft"),
    path("policies/publish/", policies.PolicyPublishView.as_view(), name="policy_publish"),
    path("policies/simulate/", policies.PolicySimulateView.as_view(), name="policy_simulate"),
    path("policies/versions/", policies.PolicyVersionListView.as_view(), name="policy_versions"),
    path(
        "policies/versions/<int:number>/",
        policies.PolicyVersionDetailView.as_view(),
        name="policy_version",
    ),
    path(
        "policies/versions/<int:number>/diff/<int:other>/",
        policies.PolicyVersionDiffView.as_view(),
        name="policy_version_diff",
    ),
    path(
        "policies/versions/<int:number>/rollback/",
        policies.PolicyRollbackView.as_view(),
        name="policy_rollback",
    ),
    path("sessions/", sessions.SessionListView.as_view(), name="sessions"),
    path("sessions/kill-all/", sessions.SessionKillAllView.as_view(), name="sessions_kill_all"),
    path(
        "sessions/<str:session_id>/kill/", sessions.SessionKillView.as_view(), name="session_kill"
    ),
    path(
        "sessions/<str:session_id>/suspend/",
        sessions.SessionSuspendView.as_view(),
        name="session_suspend",
    ),
    path(
        "sessions/<str:session_id>/resume/",
        sessions.SessionResumeView.as_view(),
        name="session_resume",
    ),
    path("anomalies/", anomalies.AnomalyListView.as_view(), name="anomalies"),
    path("anomalies/<str:anomaly_id>/", anomalies.AnomalyDetailView.as_view(), name="anomaly"),
    path(
        "anomalies/<str:anomaly_id>/acknowledge/",
        anomalies.AnomalyAcknowledgeView.as_view(),
        name="anomaly_acknowledge",
    ),
    path(
        "anomalies/<str:anomaly_id>/resolve/",
        anomalies.AnomalyResolveView.as_view(),
        name="anomaly_resolve",
    ),
]
