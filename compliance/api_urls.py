"""Routes of the audit-backed resources under /api/v1/ (see compliance/api.py)."""

from __future__ import annotations

from django.urls import path

from compliance import api

urlpatterns = [
    path("audit-events/", api.AuditEventListView.as_view(), name="audit_events"),
    path("audit-events/export/", api.AuditEventExportView.as_view(), name="audit_events_export"),
    path("audit/verify/", api.AuditVerifyView.as_view(), name="audit_verify"),
    path("sessions/<str:session_id>/", api.SessionDetailView.as_view(), name="session"),
    path("policies/replay/", api.PolicyReplayView.as_view(), name="policy_replay"),
]
