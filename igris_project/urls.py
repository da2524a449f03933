from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "igris platform administration"
admin.site.site_title = "igris admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/auth/", include("allauth.headless.urls")),
    path("api/v1/ingest/", include("governance.ingest.urls")),
    path("api/v1/", include("igris_project.api_urls")),
    path("observe/", include("compliance.observe.urls", namespace="observe")),
    path("", include("governance.urls", namespace="console")),
]
