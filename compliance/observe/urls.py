"""The observe console pages (namespace "observe"), mounted at /observe/ by igris_project/urls."""

from __future__ import annotations

from django.urls import path

from compliance.views import observe

app_name = "observe"

urlpatterns = [
    path("", observe.dashboard, name="dashboard"),
]
