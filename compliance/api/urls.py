"""Routes of the audit-backed resources under /api/v1/ (compliance/api/)."""

from __future__ import annotations

from django.urls import path

from compliance.api import chain, events, replay, sessions

urlpatterns = [
    path("audit-events/", events.AuditEventListView.as_view(), name="audit_events"),
    path("audit-events/export/", events.AuditEventExportView.as_view(), name="audit_events_export"),
    path("audit/verify/", chain.AuditVerifyView.as_view(), name="audit_verify"),
    path("sessions/<str:session_id>/", sessions.SessionDetailView.as_view(), name="session"),
    path("policies/replay/", replay.PolicyReplayView.as_view(), name="policy_replay"),
]
