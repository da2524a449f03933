"""Serializers of API v1: output shapes (flat, ids as strings, ISO-8601 UTC times) and strict
inputs (`StrictSerializer`: unknown names are refused)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.base import SafeJSONField, StrictSerializer
from governance.api.pagination import PageQuery
from governance.models import (
    SLUG_VALIDATOR,
    AnomalyStatus,
    IngestProvider,
    Posture,
    Scope,
    SessionState,
    ToolState,
    UpstreamAuth,
)
from governance.permissions import Role
from governance.policy.rules import KNOWN_METHODS
from governance.runtime_flags import (
    CIRCUIT_CLOSED,
    CIRCUIT_HALF_OPEN,
    CIRCUIT_OPEN,
    CIRCUIT_UNKNOWN,
    Circuit,
)

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


def _id(**kwargs: Any) -> serializers.CharField:
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


# --- organisation ---------------------------------------------------------------------------


class OrganizationSerializer(serializers.Serializer):
    id = _id()
    name = serializers.CharField()
    slug = serializers.CharField()
    default_posture = serializers.ChoiceField(Posture.choices)
    block_drifted_tools = serializers.BooleanField()
    auto_suspend_on_anomaly = serializers.BooleanField()
    audit_retention_days = serializers.IntegerField()
    redact_argument_keys = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


class OrganizationUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False)
    default_posture = serializers.ChoiceField(Posture.choices, required=False)
    block_drifted_tools = serializers.BooleanField(required=False)
    auto_suspend_on_anomaly = serializers.BooleanField(required=False)
    audit_retention_days = serializers.IntegerField(min_value=1, max_value=36500, required=False)
    redact_argument_keys = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=200, required=False
    )


# --- members and invitations ----------------------------------------------------------------


class MemberSerializer(serializers.Serializer):
    id = _id()
    user_id = _id()
    email = serializers.EmailField(source="user.email")
    role = serializers.ChoiceField(ROLES)
    created_at = serializers.DateTimeField()


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(ROLES)


class InvitationSerializer(serializers.Serializer):
    id = _id()
    email = serializers.EmailField()
    role = serializers.ChoiceField(ROLES)
    invited_by = EmailOf()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class InvitationCreateSerializer(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(ROLES)


# --- API keys -------------------------------------------------------------------------------


class ApiKeySerializer(serializers.Serializer):
    id = _id()
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


# --- servers and tools ----------------------------------------------------------------------


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

    id = _id()
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
    id = _id()
    server = _id(source="server_id")
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


# --- policies -------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["draft"]},
            {"type": "integer", "minimum": 1, "maximum": 2147483647},
        ],
        "default": "draft",
    }
)
class PolicyRefField(serializers.Field):
    """Which rule list: "draft" or a published version number."""

    default_error_messages = {"invalid": 'Give "draft" or a version number.'}

    def to_internal_value(self, data: Any) -> Any:
        if data == "draft":
            return data
        if isinstance(data, int) and not isinstance(data, bool) and 0 < data < 2**31:
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


RULES_SCHEMA = {
    "type": "array",
    "items": {"type": "object", "additionalProperties": True},
    "description": "Ordered rule documents (see governance/policy/rules.py for the shape).",
}


@extend_schema_field(RULES_SCHEMA)
class RulesField(SafeJSONField):
    pass


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(SafeJSONField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kind=dict, **kwargs)


class PolicyDiffSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.CharField(allow_null=True))
    removed = serializers.ListField(child=serializers.CharField(allow_null=True))
    changed = serializers.ListField(child=serializers.CharField(allow_null=True))
    reordered = serializers.BooleanField()


class PolicyDraftSerializer(serializers.Serializer):
    rules = RulesField()
    base_version = serializers.IntegerField(allow_null=True)
    latest_version = serializers.IntegerField(allow_null=True)
    changes_from_latest = PolicyDiffSerializer()
    updated_by = EmailOf()
    updated_at = serializers.DateTimeField(allow_null=True)


class PolicyDraftUpdateSerializer(StrictSerializer):
    rules = RulesField()


class PolicyVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    rules = RulesField()
    posture = serializers.ChoiceField(Posture.choices)
    note = serializers.CharField(allow_blank=True)
    rolled_back_from = serializers.IntegerField(allow_null=True)
    published_by = EmailOf()
    published_at = serializers.DateTimeField()


class PolicyVersionSummarySerializer(serializers.Serializer):
    number = serializers.IntegerField()
    rule_count = serializers.SerializerMethodField()
    posture = serializers.ChoiceField(Posture.choices)
    note = serializers.CharField(allow_blank=True)
    rolled_back_from = serializers.IntegerField(allow_null=True)
    published_by = EmailOf()
    published_at = serializers.DateTimeField()

    def get_rule_count(self, version: Any) -> int:
        return len(version.rules)


class PolicyVersionDiffSerializer(PolicyDiffSerializer):
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()


class PolicyPublishSerializer(StrictSerializer):
    note = serializers.CharField(max_length=300, allow_blank=True, required=False)


class PolicySimulateSerializer(StrictSerializer):
    server = serializers.CharField(max_length=64, help_text="Server slug.")
    method = serializers.ChoiceField(sorted(KNOWN_METHODS), default="tools/call")
    tool = serializers.CharField(
        max_length=500,
        required=False,
        allow_null=True,
        help_text="Tool name (tools/call), prompt name (prompts/get) or resource URI.",
    )
    arguments = JSONObjectField(required=False, allow_null=True)
    key = serializers.UUIDField(required=False, allow_null=True, help_text="API key id.")
    key_tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=50
    )
    role = serializers.ChoiceField(ROLES, required=False, allow_null=True)
    version = PolicyRefField(required=False, default="draft")
    at = serializers.DateTimeField(
        required=False, help_text="When the call happens (time windows); default now."
    )

    def validate_at(self, value: Any) -> Any:
        if not 1900 <= value.year <= 9000:
            raise serializers.ValidationError("Give a time between the years 1900 and 9000.")
        return value


class DecisionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(["allow", "deny", "alert"])
    rule_id = serializers.CharField(allow_null=True)
    rule_index = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    reason = serializers.CharField()


class SkipSerializer(serializers.Serializer):
    rule_index = serializers.IntegerField()
    rule_id = serializers.CharField()
    reason = serializers.CharField()


class SimulationSerializer(serializers.Serializer):
    policy = serializers.CharField(help_text='"draft" or "version N".')
    decision = DecisionSerializer()
    matched_rule = serializers.DictField(allow_null=True)
    skipped = SkipSerializer(many=True, help_text="Why each earlier rule did not match.")


class ReplayChangeSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    ts = serializers.DateTimeField()
    server = serializers.CharField(allow_null=True)
    tool = serializers.CharField(allow_null=True)
    old_decision = serializers.CharField()
    new_decision = serializers.CharField()
    new_rule_id = serializers.CharField(allow_null=True)


class ReplaySerializer(serializers.Serializer):
    policy = serializers.CharField()
    total = serializers.IntegerField(help_text="Recorded tool calls in the range.")
    evaluated = serializers.IntegerField(help_text="Calls that the policy decided when recorded.")
    skipped = serializers.IntegerField(help_text="Calls refused before the policy (kill switch…).")
    newly_denied = serializers.IntegerField()
    newly_allowed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    per_rule = serializers.DictField(
        child=serializers.IntegerField(),
        help_text='Calls each rule would decide; "(default)" is the posture.',
    )
    examples = ReplayChangeSerializer(many=True)


ReplayRequestSerializer = type(
    "ReplayRequestSerializer",
    (StrictSerializer,),
    {
        "__doc__": "A time range of recorded tool calls and the rule list to replay them on.",
        "version": PolicyRefField(required=False, default="draft"),
        "from": serializers.DateTimeField(),
        "to": serializers.DateTimeField(),
    },
)


# --- sessions and anomalies -----------------------------------------------------------------


class SessionSerializer(serializers.Serializer):
    id = _id()
    server = _id(source="server_id", allow_null=True)
    server_slug = serializers.CharField()
    key = _id(source="key_id", allow_null=True)
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


class EmptySerializer(StrictSerializer):
    pass


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
    id = _id()
    session = _id(source="session_id", allow_null=True)
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
    kind = serializers.CharField(max_length=40, required=False)


class ResolveSerializer(StrictSerializer):
    note = serializers.CharField(max_length=2000)


class ToolFilters(PageQuery):
    server = serializers.UUIDField(required=False, help_text="Server id.")
    state = serializers.ChoiceField(ToolState.choices, required=False)


# --- ingest sources -------------------------------------------------------------------------


class IngestSourceSerializer(serializers.Serializer):
    id = _id()
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
