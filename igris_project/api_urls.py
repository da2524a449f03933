"""/api/v1/: the REST API (governance and compliance resources), its OpenAPI schema and docs.

Anything else under /api/v1/ is a problem+json 404, not an HTML page.
"""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from governance.api.docs import api_docs
from governance.api.errors import not_found_view

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("docs/reference/", api_docs, name="docs-reference"),
    path("", include("governance.api.urls")),
    path("", include("compliance.api.urls")),
    re_path(r"^.*$", not_found_view),
]
