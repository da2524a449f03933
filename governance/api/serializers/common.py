"""What the API v1 serializers share: the role choices, the user-as-e-mail and read-only id
fields, the RFC 9457 problem shape and the empty body."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance.api.base import StrictSerializer
from governance.permissions import Role

ROLES = [r.value for r in Role]


class EmailOf(serializers.CharField):
    """A user foreign key shown as the user's e-mail (null when gone)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def get_attribute(self, instance: Any) -> Any:
        user = super().get_attribute(instance)
        return None if user is None else user.email

    def to_representation(self, value: Any) -> Any:
        return value


def id_field(**kwargs: Any) -> serializers.CharField:
    """A read-only id, shown as a string."""
    return serializers.CharField(read_only=True, **kwargs)


# --- problems -------------------------------------------------------------------------------


class ProblemFieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    code = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details; extra members (reason, retry_after, ...) may follow."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = ProblemFieldErrorSerializer(many=True)


class EmptySerializer(StrictSerializer):
    pass
