"""The OpenAPI schema is served, and the live API keeps to it: schemathesis generates requests
for every operation from the schema (authenticated as an acme key with every scope) and checks
that no answer is a server error and that each status and body is the documented one."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 10


def test_the_schema_is_served_as_openapi_3(anonymous):
    response = anonymous.call("get", "/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    problem = schema["paths"]["/api/v1/servers/"]["post"]["responses"]["400"]
    assert "application/problem+json" in problem["content"]
    params = schema["paths"]["/api/v1/servers/"]["post"]["parameters"]
    assert [p["name"] for p in params] == ["Idempotency-Key"]
    request = schema["components"]["schemas"]["ServerWriteRequest"]
    assert request["additionalProperties"] is False
    assert request["properties"]["credential"]["writeOnly"] is True
    assert "credential" not in schema["components"]["schemas"]["Server"]["properties"]


def test_the_endpoint_table_covers_every_operation_in_the_schema(anonymous):
    import re

    from tests.api.endpoints import ENDPOINTS

    schema = anonymous.call("get", "/api/v1/schema/?format=json").json()
    documented = {
        (method, re.sub(r"\{[^}]+\}", "{}", path))
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    tabled = {(e.method, re.sub(r"\{[^}]+\}", "{}", "/api/v1/" + e.path)) for e in ENDPOINTS}
    assert documented == tabled
    assert len(documented) == 52


def test_the_interactive_docs_load_swagger_ui_from_this_server(anonymous):
    response = anonymous.call("get", "/api/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "/api/v1/schema/" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()


def test_the_reference_page_is_served_without_third_party_assets(anonymous):
    response = anonymous.call("get", "/api/v1/docs/reference/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/v1/policies/simulate/" in page
    assert "<script" not in page
    assert "cdn" not in page.lower()
    assert response["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.fixture
def inside_the_test_transaction(settings):
    """Run WSGI requests inside the test's transaction, as django.test.Client arranges: no
    per-request connection recycling. And no request budget in the way."""
    from django.core import signals
    from django.db import close_old_connections

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api": "1000000/min"},
    }
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _live_schema():
    # Loaded at collection (pytest-django has configured Django by then; serving the schema
    # needs no database). schemathesis' fixture-based lazy loading fails on pytest 9.
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())


schema = _live_schema()


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_schema(case, inside_the_test_transaction, world, admin_key):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_key[1]}"},
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )
