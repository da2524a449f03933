"""OpenAPI 3 details drf-spectacular cannot infer: the bearer scheme, problem+json answers,
the Idempotency-Key header and each view's query parameters."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter

from governance.api.errors import PROBLEM_CONTENT_TYPE
from governance.api.idempotency import HEADER as IDEMPOTENCY_HEADER


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "governance.drf.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ig_<prefix><secret>",
            "description": "An igris API key. Scopes: read (GET), write (changes), admin "
            "(members and keys).",
        }


class ConsoleSessionScheme(OpenApiAuthenticationExtension):
    target_class = "governance.drf.ConsoleSessionAuthentication"
    name = "consoleSession"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        from django.conf import settings

        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}


PROBLEMS = {
    "400": "Bad input: unknown fields or filters, wrong types, invalid cursor (problem+json).",
    "401": "No valid credentials; `reason` says why (missing, invalid, expired, revoked).",
    "403": "The role or the key's scopes do not allow this.",
    "404": "No such object in this organisation.",
    "409": "The object is not in a state that allows this.",
    "415": "The body must be application/json.",
    "422": "Unprocessable: an Idempotency-Key reused with another body, or a request too large "
    "to process (see `code`).",
    "502": "The upstream MCP server could not be reached or did not answer as one.",
    "429": "Too many requests with this key; see Retry-After.",
}


class ApiAutoSchema(AutoSchema):
    def _handler(self) -> Any:
        return getattr(self.view, (self.method or "get").lower(), None)

    def get_description(self) -> str:
        # Only a view's own docstring: the base class's would repeat on every operation.
        return (type(self.view).__dict__.get("__doc__") or "").strip()

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if self.method == "GET" and getattr(self.view, "paginator", None) is not None:
            return operation_id.removesuffix("_retrieve") + "_list"
        return operation_id

    def get_override_parameters(self) -> list[Any]:
        params = list(super().get_override_parameters())
        query = getattr(self.view, "query", {}).get(self.method)
        if query is not None:
            params.append(query)
        if getattr(self._handler(), "idempotent", False):
            params.append(
                OpenApiParameter(
                    IDEMPOTENCY_HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    required=False,
                    description="Any unique string (at most 255 printable ASCII characters): "
                    "a retry with the same key and body replays the first answer for 24 h.",
                )
            )
        return params

    def _problem_codes(self) -> list[str]:
        from governance.api.base import ApiView

        if not isinstance(self.view, ApiView):
            return []
        codes = ["400", "401", "403", "429"]
        if "{" in self.path:
            codes.append("404")
        if self.method not in ("GET", "HEAD"):
            codes += ["409", "415"]
        if getattr(self._handler(), "idempotent", False):
            codes.append("422")
        codes += getattr(self.view, "problems", {}).get(self.method, ())
        return codes

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        codes = self._problem_codes()
        if codes:
            from governance.api.serializers import ProblemSerializer

            ref = self.resolve_serializer(ProblemSerializer, "response").ref
            for code in codes:
                responses.setdefault(
                    code,
                    {
                        "description": PROBLEMS[code],
                        "content": {PROBLEM_CONTENT_TYPE: {"schema": ref}},
                    },
                )
        return dict(sorted(responses.items()))


def strict_request_bodies(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: request bodies refuse unknown names (StrictSerializer), so say so."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component.setdefault("additionalProperties", False)
    return result
