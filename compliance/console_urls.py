"""Console pages of compliance, served in the console's "console" namespace beside
governance.urls (joined in igris_project/urls.py: governance may not import compliance)."""

from __future__ import annotations

from django.urls import path

from compliance.views import audit

urlpatterns = [
    path("audit/", audit.audit_log, name="audit"),
    path("audit/export/", audit.audit_export, name="audit_export"),
    path("audit/<int:seq>/", audit.audit_detail, name="audit_detail"),
    # Pages that know an event by its id (an anomaly's) link here; it answers with its seq's page.
    path("audit/events/<uuid:event_id>/", audit.audit_event, name="audit_event"),
]
