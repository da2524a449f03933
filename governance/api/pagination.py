"""Keyset ("cursor") pagination: stable under inserts, constant cost at any depth.

A list is ordered by a tuple of columns that ends in a unique one; the cursor is the ordering
values of the last row returned, as opaque URL-safe base64 of JSON. The next page is the rows
strictly after it, so a page never repeats or skips rows that existed when it was read.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Model, Q, QuerySet
from rest_framework import serializers

from governance.api.errors import invalid

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageQuery(serializers.Serializer):
    """The query parameters every list takes (list filter serializers extend it)."""

    cursor = serializers.CharField(
        required=False, max_length=512, help_text="`next_cursor` of the previous page."
    )
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_LIMIT,
        default=DEFAULT_LIMIT,
        help_text=f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
    )


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([_plain(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        values = None
    if not isinstance(values, list) or len(values) != size:
        raise invalid("cursor", "This cursor is not valid for this list.", "invalid_cursor")
    return values


class KeysetPaginator:
    """Paginate a queryset by `ordering` ("-created_at", "id"): the last field must be unique."""

    def __init__(self, *ordering: str) -> None:
        self.ordering = ordering
        self.fields = [(name.lstrip("-"), name.startswith("-")) for name in ordering]

    def _after(self, model: type[Model], raw: list[Any]) -> Q:
        values = []
        for (name, _), value in zip(self.fields, raw, strict=True):
            field = cast(Field, model._meta.get_field(name))
            if value is None or isinstance(value, dict | list | bool):
                raise invalid("cursor", "This cursor is not valid for this list.", "invalid_cursor")
            try:
                values.append(field.to_python(value))
            except (DjangoValidationError, TypeError, ValueError, OverflowError):
                raise invalid(
                    "cursor", "This cursor is not valid for this list.", "invalid_cursor"
                ) from None
        condition = Q()
        for i, (name, desc) in enumerate(self.fields):
            step = Q(**{f"{name}__{'lt' if desc else 'gt'}": values[i]})
            for j, (prev_name, _) in enumerate(self.fields[:i]):
                step &= Q(**{prev_name: values[j]})
            condition |= step
        return condition

    def paginate(self, queryset: QuerySet[Any], query: dict[str, Any]) -> Page:
        qs = queryset.order_by(*self.ordering)
        cursor = query.get("cursor")
        if cursor:
            raw = decode_cursor(cursor, len(self.fields))
            qs = qs.filter(self._after(queryset.model, raw))
        limit = query.get("limit") or DEFAULT_LIMIT
        rows = list(qs[: limit + 1])
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            get = last.__getitem__ if isinstance(last, dict) else last.__getattribute__
            next_cursor = encode_cursor([get(name) for name, _ in self.fields])
        return Page(rows, next_cursor)


_PAGE_SERIALIZERS: dict[type[serializers.Serializer], type[serializers.Serializer]] = {}


def page_of(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The response serializer of a list of `item` (for the schema; one class per item)."""
    if item not in _PAGE_SERIALIZERS:
        name = item.__name__.removesuffix("Serializer") + "Page"
        _PAGE_SERIALIZERS[item] = type(
            name,
            (serializers.Serializer,),
            {
                "results": item(many=True),
                "next_cursor": serializers.CharField(
                    allow_null=True,
                    help_text="Pass as `cursor` for the next page; null at the end.",
                ),
            },
        )
    return _PAGE_SERIALIZERS[item]
