"""Errors as problem details (RFC 9457, `application/problem+json`) with a stable `code`.

Body: `{type, title, status, detail, code, errors: [{field, message, code}]}`, plus a few
extra members where they help (`reason` for 401/403, `retry_after` for 429). `type` is a URN
built from `code`, so clients can switch on either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from governance.permissions import PermissionDenied as RoleDenied
from governance.services.base import ServiceError

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Service error codes that mean "the object is not in a state that allows this" (409).
CONFLICT_CODES = frozenset(
    {
        "conflict",
        "already_member",
        "already_invited",
        "already_revoked",
        "already_killed",
        "already_resolved",
        "invitation_closed",
        "last_owner",
        "no_draft",
        "not_active",
        "not_drifted",
        "not_open",
        "not_suspended",
    }
)


class ApiProblem(exceptions.APIException):
    """Raise from a view to answer with a specific problem."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status
        self.problem_code = code
        self.problem_detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra


def field_error(field: str | None, message: str, code: str = "invalid") -> dict[str, Any]:
    return {"field": field, "message": message, "code": code}


def invalid(field: str | None, message: str, code: str = "invalid") -> ApiProblem:
    """A 400 naming the one field that is wrong."""
    return ApiProblem(400, "invalid", message, errors=[field_error(field, message, code)])


def problem_body(
    status: int,
    code: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": f"urn:igris:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": errors or [],
        **extra,
    }


class ProblemResponse(Response):
    """A DRF response that renders as JSON whatever renderer its view negotiated: the schema
    view's YAML or Swagger UI's HTML template would otherwise render the problem."""

    @property
    def rendered_content(self) -> Any:
        self.accepted_renderer = JSONRenderer()
        return super().rendered_content


def problem_response(
    status: int,
    code: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    return ProblemResponse(
        problem_body(status, code, detail, errors, **extra),
        status=status,
        headers=headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def problem_json(
    status: int,
    code: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JsonResponse:
    """The same problem document from plain Django views and middleware (no DRF renderer)."""
    return JsonResponse(
        problem_body(status, code, detail, errors, **extra),
        status=status,
        headers=headers,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def _path(prefix: str, key: Any) -> str:
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def flatten_errors(detail: Any, prefix: str = "") -> list[dict[str, Any]]:
    """DRF's nested error detail as a flat list of {field, message, code}."""
    out: list[dict[str, Any]] = []
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                out.extend(flatten_errors(value, prefix))
            else:
                out.extend(flatten_errors(value, _path(prefix, key)))
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, Mapping | list):
                out.extend(flatten_errors(value, _path(prefix, index)))
            else:
                out.extend(flatten_errors(value, prefix))
    else:
        code = getattr(detail, "code", None) or "invalid"
        out.append(field_error(prefix or None, str(detail), code))
    return out


def _service_problem(exc: ServiceError) -> Response:
    errors = getattr(exc, "errors", None)
    if errors is not None:  # PolicyRulesInvalid: one entry per rule problem
        located = []
        for error in errors:
            index, name = error.get("index"), error.get("field") or ""
            if index is None:
                where = "rules"
            elif name in ("", "rule"):
                where = f"rules[{index}]"
            else:
                where = f"rules[{index}].{name}"
            located.append(field_error(where, str(error.get("message")), "invalid_rule"))
        return problem_response(400, "invalid", exc.message, located)
    if exc.code == "not_found":
        return problem_response(404, "not_found", exc.message)
    if exc.code in CONFLICT_CODES:
        return problem_response(409, exc.code, exc.message)
    errs = [field_error(exc.field, exc.message, exc.code)] if exc.field else []
    return problem_response(400, "invalid" if exc.field else exc.code, exc.message, errs)


def _detail_parts(detail: Any, default_code: str, default_text: str) -> tuple[str, str]:
    """(code, text) from a detail that may be {"code": .., "detail": ..} (governance.drf)."""
    if isinstance(detail, Mapping):
        return str(detail.get("code", default_code)), str(detail.get("detail", default_text))
    return default_code, str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every handled error as problem+json."""
    response = _handle(exc)
    if response is not None:
        set_rollback()
    return response


def _handle(exc: Exception) -> Response | None:
    if isinstance(exc, ApiProblem):
        return problem_response(
            exc.status_code,
            exc.problem_code,
            exc.problem_detail,
            exc.errors,
            exc.headers,
            **exc.extra,
        )
    if isinstance(exc, Http404 | exceptions.NotFound):
        text = str(exc) if isinstance(exc, Http404) and str(exc) else "Not found."
        return problem_response(404, "not_found", text)
    if isinstance(exc, ServiceError):
        return _service_problem(exc)
    if isinstance(exc, RoleDenied):
        return problem_response(
            403,
            "permission_denied",
            f"Your role ({exc.role or 'none'}) may not {exc.action.value}.",
            reason="role",
        )
    if isinstance(exc, DjangoPermissionDenied):
        return problem_response(403, "permission_denied", str(exc) or "Permission denied.")
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        unknown = bool(errors) and all(e["code"] == "unknown_field" for e in errors)
        code = "unknown_field" if unknown else "invalid"
        names = ", ".join(str(e["field"]) for e in errors if e["field"]) or "the request"
        text = f"Unknown field(s): {names}." if unknown else f"Invalid input: {names}."
        return problem_response(400, code, text, errors, headers)
    if isinstance(exc, exceptions.NotAuthenticated):
        return problem_response(
            exc.status_code,
            "unauthenticated",
            "No credentials were sent: use 'Authorization: Bearer ig_…'.",
            headers=headers,
            reason="missing",
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        reason, text = _detail_parts(exc.detail, "invalid", "The credentials are not valid.")
        return problem_response(
            exc.status_code, "unauthenticated", text, headers=headers, reason=reason
        )
    if isinstance(exc, exceptions.PermissionDenied):
        code, text = _detail_parts(exc.detail, "permission_denied", str(exc.detail))
        extra = dict(exc.detail) if isinstance(exc.detail, Mapping) else {}
        extra = {k: str(v) for k, v in extra.items() if k not in ("code", "detail")}
        if code not in ("permission_denied", "no_organization"):
            code = "permission_denied"
        return problem_response(403, code, text, headers=headers, **extra)
    if isinstance(exc, exceptions.Throttled):
        wait = max(1, math.ceil(exc.wait or 1))
        headers["Retry-After"] = str(wait)
        return problem_response(
            429,
            "throttled",
            f"{getattr(exc, 'summary', 'Too many requests with this key')}: retry in {wait} s.",
            headers=headers,
            retry_after=wait,
        )
    codes = {
        exceptions.ParseError: ("malformed_json", "The body is not valid JSON."),
        exceptions.MethodNotAllowed: ("method_not_allowed", None),
        exceptions.NotAcceptable: ("not_acceptable", None),
        exceptions.UnsupportedMediaType: ("unsupported_media_type", None),
    }
    for kind, (kind_code, kind_text) in codes.items():
        if isinstance(exc, kind):
            text = kind_text or str(exc.detail)
            return problem_response(exc.status_code, kind_code, text, None, headers)
    return problem_response(exc.status_code, exc.default_code, str(exc.detail), None, headers)


# Exempt: it changes nothing, and an unknown path must answer 404 whatever the method, not the
# CSRF middleware's 403 (a client without the cookie is told the path is wrong, not to log in).
@csrf_exempt
def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any unmatched path under /api/v1/ answers like the API does, not with an HTML page."""
    return problem_json(404, "not_found", f"There is no API resource at {request.path}.")


def csrf_failure(request: HttpRequest, reason: str = "") -> Any:
    """settings.CSRF_FAILURE_VIEW: a problem under /api/ (allauth's headless browser endpoints
    check CSRF with Django's middleware), Django's own page everywhere else."""
    from django.views.csrf import csrf_failure as django_csrf_failure

    if not request.path.startswith("/api/"):
        return django_csrf_failure(request, reason)
    # The code and shape of DRF's own CSRF refusal (a 403 permission_denied), with `reason`
    # telling it apart from a role refusal as the other 403s do.
    return problem_json(
        403,
        "permission_denied",
        f"CSRF verification failed: {reason or 'no reason given.'} A console session sends the "
        "X-CSRFToken header; API clients authenticate with 'Authorization: Bearer ig_…' instead.",
        reason="csrf",
    )
