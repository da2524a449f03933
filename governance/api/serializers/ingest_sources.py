"""Serializers of ingest sources: the outside gateways that send events to
/api/v1/ingest/<provider>."""

from __future__ import annotations

from rest_framework import serializers

from governance.api.base import StrictSerializer
from governance.api.serializers.common import EmailOf, id_field
from governance.models import IngestProvider


class IngestSourceSerializer(serializers.Serializer):
    id = id_field()
    name = serializers.CharField()
    provider = serializers.CharField()
    created_by = EmailOf()
    created_at = serializers.DateTimeField()
    rotated_at = serializers.DateTimeField(allow_null=True)


class IngestSourceSecretSerializer(IngestSourceSerializer):
    secret = serializers.CharField(
        help_text="The signing secret (HMAC-SHA256 key). Shown in this response only: store it now."
    )


class IngestSourceCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120)
    provider = serializers.ChoiceField(IngestProvider.values)
