"""Under /api/ every failure is a problem document (RFC 9457, `application/problem+json`),
including those Django answers before, around or instead of an API view.

DRF's exception handler (governance/api/errors.py) shapes what API views raise. Some answers never
reach it: a body over the size limit (Django's `RequestDataTooBig` is a `SuspiciousOperation`,
answered by `handler400` with an HTML page, or the debug page with a traceback), a path that no
route matches, a `SuspiciousOperation` raised by Django itself, an unexpected exception (500).
This middleware, first in MIDDLEWARE so it sees every answer, refuses an oversized body before
anything reads it and turns any remaining non-JSON error page into a problem of the same status.
JSON answers (the API's own problems, allauth's headless API with its documented error shape)
pass unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from governance.api.errors import problem_json

API_PREFIX = "/api/"
JSON_TYPES = ("application/json", "application/problem+json")
# Headers of the original answer that still hold for the problem that replaces it.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _declared_length(request: HttpRequest) -> int | None:
    declared = request.META.get("CONTENT_LENGTH") or ""
    return int(declared) if declared.isdigit() else None


def _body_too_large(length: int, limit: int) -> HttpResponse:
    return problem_json(
        413,
        "body_too_large",
        f"The request body is {length} bytes; the limit is {limit} bytes.",
        max_bytes=limit,
    )


def _is_json(response: HttpResponse) -> bool:
    kind = response.get("Content-Type", "").split(";")[0].strip().lower()
    return kind in JSON_TYPES


def _replacement(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    status = response.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    code, detail = {
        400: ("bad_request", "The request could not be read."),
        403: ("permission_denied", "Permission denied."),
        404: ("not_found", f"There is no API resource at {request.path}."),
        405: ("method_not_allowed", f"Method {request.method} is not allowed here."),
        500: ("server_error", "igris could not handle this request; the error is logged."),
    }.get(status, (phrase.lower().replace(" ", "_").replace("-", "_"), f"{phrase}."))
    headers = {name: response[name] for name in KEPT_HEADERS if response.has_header(name)}
    return problem_json(status, code, detail, headers=headers or None)


class ApiProblemMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        # Django checks DATA_UPLOAD_MAX_MEMORY_SIZE (the same number, settings.py) only when a
        # view reads the body, and answers with an HTML 400; refuse here, before anything reads.
        length, limit = _declared_length(request), settings.IGRIS_API_MAX_BODY_BYTES
        if length is not None and length > limit:
            return _body_too_large(length, limit)
        response = self.get_response(request)
        if response.status_code < 400 or _is_json(response):
            return response
        return _replacement(request, response)
