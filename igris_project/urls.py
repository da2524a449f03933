from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from compliance import console_urls as compliance_console
from governance import urls as governance_console

admin.site.site_header = "igris platform administration"
admin.site.site_title = "igris admin"

# One "console" namespace for every app's console pages: governance's, and compliance's (the
# audit log), which governance may not import (the import-linter layers).
CONSOLE_URLPATTERNS = [*governance_console.urlpatterns, *compliance_console.urlpatterns]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/auth/", include("allauth.headless.urls")),
    path("api/v1/ingest/", include("compliance.ingest.urls")),
    path("api/v1/", include("igris_project.api_urls")),
    path("observe/", include("compliance.observe.urls", namespace="observe")),
    path("", include((CONSOLE_URLPATTERNS, "console"), namespace="console")),
]
