"""Serializers of agent sessions (and stopping them) and of anomalies."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance.api.base import StrictSerializer
from governance.api.pagination import PageQuery
from governance.api.serializers.common import EmailOf, id_field
from governance.models import AnomalyKind, AnomalyStatus, SessionState


class SessionSerializer(serializers.Serializer):
    id = id_field()
    server = id_field(source="server_id", allow_null=True)
    server_slug = serializers.CharField()
    key = id_field(source="key_id", allow_null=True)
    user = EmailOf()
    era = serializers.CharField()
    protocol_version = serializers.CharField(allow_blank=True)
    client_name = serializers.CharField(allow_blank=True)
    client_version = serializers.CharField(allow_blank=True)
    state = serializers.ChoiceField(SessionState.choices)
    state_reason = serializers.CharField(allow_blank=True)
    calls = serializers.IntegerField()
    denied = serializers.IntegerField()
    errors = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class SessionFilters(PageQuery):
    state = serializers.ChoiceField(SessionState.choices, required=False)
    server = serializers.UUIDField(required=False, help_text="Server id.")
    key = serializers.UUIDField(required=False, help_text="API key id.")


class ReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=300, allow_blank=True, required=False)


class KillAllSerializer(StrictSerializer):
    scope = serializers.ChoiceField(["key", "server", "org"])
    id = serializers.UUIDField(
        required=False, allow_null=True, help_text="The key or server id (not for scope org)."
    )
    reason = serializers.CharField(max_length=300, allow_blank=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["scope"] == "org" and attrs.get("id"):
            raise serializers.ValidationError({"id": "Leave id out when the scope is org."})
        if attrs["scope"] != "org" and not attrs.get("id"):
            raise serializers.ValidationError({"id": f"Name the {attrs['scope']} to stop."})
        return attrs


class KillAllResultSerializer(serializers.Serializer):
    scope = serializers.CharField()
    id = serializers.CharField(allow_null=True)
    sessions_killed = serializers.IntegerField()


class AnomalySerializer(serializers.Serializer):
    id = id_field()
    session = id_field(source="session_id", allow_null=True)
    server_slug = serializers.CharField(allow_blank=True)
    kind = serializers.CharField()
    severity = serializers.CharField()
    tool = serializers.CharField(allow_blank=True)
    detail = serializers.JSONField()
    status = serializers.ChoiceField(AnomalyStatus.choices)
    note = serializers.CharField(allow_blank=True)
    resolved_by = EmailOf()
    created_at = serializers.DateTimeField()


class AnomalyFilters(PageQuery):
    status = serializers.ChoiceField(AnomalyStatus.choices, required=False)
    kind = serializers.ChoiceField(AnomalyKind.choices, required=False)


class ResolveSerializer(StrictSerializer):
    note = serializers.CharField(max_length=2000)
