"""Serializers of upstream servers (with their circuit breaker) and of their tools."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.base import StrictSerializer
from governance.api.pagination import PageQuery
from governance.api.serializers.common import EmailOf, id_field
from governance.models import SLUG_VALIDATOR, ToolState, UpstreamAuth
from governance.runtime.flags import (
    CIRCUIT_CLOSED,
    CIRCUIT_HALF_OPEN,
    CIRCUIT_OPEN,
    CIRCUIT_UNKNOWN,
    Circuit,
)


class CircuitSerializer(serializers.Serializer):
    """The proxies' circuit breaker for one server (read-only; reset it with reset-circuit)."""

    state = serializers.ChoiceField(
        [CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN, CIRCUIT_UNKNOWN],
        help_text="open: calls fail fast (-31013); half_open: the next call is a trial; "
        "unknown: the hot state could not be read.",
    )
    failures = serializers.IntegerField(
        help_text="Consecutive upstream failures when the circuit last changed state."
    )
    opened_at = serializers.DateTimeField(allow_null=True)
    retry_at = serializers.DateTimeField(
        allow_null=True, help_text="When the cool-down ends and a trial call may go through."
    )
    last_error = serializers.CharField(allow_blank=True)

    def to_representation(self, instance: Circuit) -> dict[str, Any]:
        return super().to_representation(
            {
                "state": instance.state,
                "failures": instance.failures,
                "opened_at": instance.opened,
                "retry_at": instance.retry,
                "last_error": instance.last_error,
            }
        )


class ServerSerializer(serializers.Serializer):
    """A server; its `circuit` comes from the serializer context (`server_circuits`)."""

    id = id_field()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    upstream_url = serializers.CharField()
    transport = serializers.CharField()
    auth_type = serializers.ChoiceField(UpstreamAuth.choices)
    auth_header_name = serializers.CharField(allow_blank=True)
    has_credential = serializers.BooleanField(
        help_text="Whether a credential is stored; the credential itself is never returned."
    )
    connect_timeout_s = serializers.FloatField()
    total_timeout_s = serializers.FloatField()
    enabled = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    circuit = serializers.SerializerMethodField()

    @extend_schema_field(CircuitSerializer)
    def get_circuit(self, server: Any) -> dict[str, Any]:
        circuit = self.context["circuits"].get(str(server.id), Circuit())
        return CircuitSerializer(circuit).data


class ServerWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120)
    slug = serializers.CharField(max_length=64, validators=[SLUG_VALIDATOR])
    description = serializers.CharField(allow_blank=True, max_length=5000, required=False)
    upstream_url = serializers.URLField(max_length=500)
    auth_type = serializers.ChoiceField(UpstreamAuth.choices, required=False)
    auth_header_name = serializers.CharField(allow_blank=True, max_length=100, required=False)
    credential = serializers.CharField(
        write_only=True,
        allow_blank=True,
        max_length=4096,
        required=False,
        trim_whitespace=False,
        help_text="Write-only: stored encrypted, never returned. Empty string removes it.",
    )
    connect_timeout_s = serializers.FloatField(min_value=0.001, max_value=300, required=False)
    total_timeout_s = serializers.FloatField(min_value=0.001, max_value=86400, required=False)
    enabled = serializers.BooleanField(required=False)


class ConnectionTestSerializer(serializers.Serializer):
    reachable = serializers.BooleanField()
    latency_ms = serializers.FloatField()
    status = serializers.IntegerField(allow_null=True, help_text="HTTP status of `initialize`.")
    protocol_version = serializers.CharField(allow_null=True)
    server_info = serializers.DictField(allow_null=True)
    capabilities = serializers.DictField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class ToolSerializer(serializers.Serializer):
    id = id_field()
    server = id_field(source="server_id")
    server_slug = serializers.CharField(source="server.slug")
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    input_schema = serializers.JSONField()
    annotations = serializers.JSONField()
    fingerprint = serializers.CharField()
    approved_fingerprint = serializers.CharField()
    state = serializers.ChoiceField(ToolState.choices)
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    approved_by = EmailOf()
    approved_at = serializers.DateTimeField(allow_null=True)


class ToolRefreshSerializer(serializers.Serializer):
    protocol_version = serializers.CharField(allow_null=True)
    observed = serializers.IntegerField(help_text="How many tools the upstream listed.")
    drifted = serializers.ListField(
        child=serializers.CharField(), help_text="Tools whose description or schema changed."
    )
    tools = ToolSerializer(many=True)


class ChangeSerializer(serializers.Serializer):
    approved = serializers.JSONField(help_text="What had been approved.")
    current = serializers.JSONField(help_text="What the server lists now.")


class ToolDiffSerializer(serializers.Serializer):
    changed = serializers.ListField(child=serializers.CharField())
    description = ChangeSerializer()
    input_schema = ChangeSerializer()


class ToolApprovedSerializer(serializers.Serializer):
    tool = ToolSerializer()
    diff = ToolDiffSerializer(help_text="Approved versus current, as it was before this approval.")


class ToolFilters(PageQuery):
    server = serializers.UUIDField(required=False, help_text="Server id.")
    state = serializers.ChoiceField(ToolState.choices, required=False)
