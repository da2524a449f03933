"""The base API view and strict input parsing.

- Bodies and query strings are validated by serializers that refuse unknown names (400
  `unknown_field`, each name in `errors`), so a typo never silently does nothing.
- Every view is tenant-scoped through `request.auth.org` (an `ApiPrincipal`).
- JSON in, JSON out: errors are problem+json whatever the Accept header says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.views import APIView

from governance.api.pagination import KeysetPaginator
from governance.api.permissions import Access, RoleAndScope
from governance.api.throttling import PerKeyThrottle
from governance.drf import ApiPrincipal
from governance.jsonsafe import unstorable_reason
from governance.models import Organization
from governance.permissions import Action

UNKNOWN = "unknown_field"


def refuse_unknown(data: Any, allowed: Any) -> None:
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValidationError(
                {
                    name: [serializers.ErrorDetail("Unknown field.", code=UNKNOWN)]
                    for name in unknown
                }
            )


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses names it does not declare."""

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(data, self.fields)
        return super().to_internal_value(data)


class SafeJSONField(serializers.JSONField):
    """Any JSON value PostgreSQL can store; optionally of one type (dict or list)."""

    def __init__(self, *args: Any, kind: type | None = None, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if self.kind is not None and value is not None and not isinstance(value, self.kind):
            names: dict[type, str] = {dict: "object", list: "array"}
            name = names.get(self.kind, self.kind.__name__)
            raise ValidationError(f"Must be a JSON {name}.", code="invalid")
        problem = unstorable_reason(value)
        if problem:
            raise ValidationError(f"This value {problem}.", code="invalid")
        return value


class SafeJSONParser(JSONParser):
    """JSONParser that answers 400, not 500, to JSON nested deeper than Python can parse."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None


class JsonOnly(BaseContentNegotiation):
    """The API has one representation; an odd Accept header does not turn errors into 406s."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        for parser in parsers:
            if parser.media_type == content_type:
                return parser
        return None

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


class ApiView(APIView):
    """Base of every /api/v1/ view.

    `access` maps HTTP methods to the role action (and scope rules) they need; `query` maps
    methods to the serializer of their query string (no entry: no query parameters allowed);
    `problems` lists extra problem statuses per method for the schema.
    """

    permission_classes = [RoleAndScope]
    throttle_classes = [PerKeyThrottle]
    parser_classes = [SafeJSONParser]
    content_negotiation_class = JsonOnly
    http_method_names = ["get", "post", "put", "patch", "delete", "head"]
    access: dict[str, Access | Action] = {}
    query: dict[str, type[serializers.Serializer]] = {}
    paginator: KeysetPaginator | None = None
    # Problem statuses a method answers besides the usual ones (for the OpenAPI schema).
    problems: dict[str, tuple[str, ...]] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.params = self._parse_query(request)

    def _parse_query(self, request: Request) -> dict[str, Any]:
        method = "GET" if request.method == "HEAD" else request.method or "GET"
        serializer_class = self.query.get(method)
        if serializer_class is None:
            refuse_unknown(request.query_params, ())
            return {}
        refuse_unknown(request.query_params, serializer_class().fields)
        serializer = serializer_class(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    @property
    def principal(self) -> ApiPrincipal:
        return self.request.auth  # type: ignore[return-value]

    @property
    def org(self) -> Organization:
        return self.principal.org

    @property
    def actor(self) -> Any:
        return self.principal.user

    def body(self, serializer_class: type[serializers.Serializer], **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def page(
        self,
        queryset: Any,
        serializer_class: type[serializers.Serializer],
        context: Callable[[list[Any]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One page; `context` builds the serializer context from the page's items."""
        assert self.paginator is not None
        page = self.paginator.paginate(queryset, self.params)
        extra = context(page.items) if context is not None else {}
        return {
            "results": serializer_class(page.items, many=True, context=extra).data,
            "next_cursor": page.next_cursor,
        }
