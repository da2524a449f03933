"""Serializers of policies: the draft, published versions, simulation and replay."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.base import SafeJSONField, StrictSerializer
from governance.api.serializers.common import ROLES, EmailOf
from governance.models import Posture
from governance.policy.rules import KNOWN_METHODS


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
