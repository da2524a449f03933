"""Routed from igris_project/urls.py at /api/v1/ingest/ (before the REST API's catch-all)."""

from __future__ import annotations

from django.urls import path

from compliance.ingest.views import ingest_view

urlpatterns = [path("<str:provider>", ingest_view, name="ingest")]
