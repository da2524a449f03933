"""Answer 503 when PostgreSQL cannot be reached, instead of a 500 or a debug page.

A database outage is an expected fault (the proxy keeps serving from its caches and the audit
stream buffers), so the console and the REST API say so plainly: the REST API with a problem
document (`code` "database_unavailable", governance/api/errors.py), the console with a page that
needs no database, both with `Retry-After`. `/healthz` reports the same outage on its own.

Listed last in MIDDLEWARE, so its `process_exception` runs first for errors raised by views,
DRF (which re-raises what its exception handler does not know) and template rendering.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

log = logging.getLogger("igris.db")

RETRY_AFTER_S = 5
API_PREFIXES = ("/api/",)


def unavailable_response(request: HttpRequest) -> HttpResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S), "Cache-Control": "no-store"}
    if request.path.startswith(API_PREFIXES):
        from governance.api.errors import PROBLEM_CONTENT_TYPE, problem_body

        body = problem_body(
            503,
            "database_unavailable",
            f"igris cannot reach its database; retry in {RETRY_AFTER_S} s.",
            retry_after=RETRY_AFTER_S,
        )
        return JsonResponse(body, status=503, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    html = render_to_string("503.html", {"retry_after": RETRY_AFTER_S})
    return HttpResponse(html, status=503, headers=headers)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.error("database unavailable on %s %s: %s", request.method, request.path, exception)
        return unavailable_response(request)
