"""Serializers of API keys."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.base import StrictSerializer
from governance.api.serializers.common import EmailOf, id_field
from governance.models import Scope


class ApiKeySerializer(serializers.Serializer):
    id = id_field()
    name = serializers.CharField()
    prefix = serializers.CharField()
    display = serializers.CharField(help_text="How the key is shown: its prefix, never its secret.")
    scopes = serializers.ListField(child=serializers.ChoiceField(Scope.choices))
    tags = serializers.ListField(child=serializers.CharField())
    allowed_servers = serializers.SerializerMethodField()
    created_by = EmailOf()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    active = serializers.BooleanField(source="is_active")

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_allowed_servers(self, key: Any) -> list[str]:
        return [str(server.pk) for server in key.allowed_servers.all()]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    secret = serializers.CharField(
        help_text="The whole key (`ig_…`). Shown in this response only: store it now."
    )


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(Scope.choices), min_length=1, max_length=len(Scope.values)
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_servers = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=500
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=50
    )
