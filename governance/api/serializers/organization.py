"""Serializers of the organisation, its members and its invitations."""

from __future__ import annotations

from rest_framework import serializers

from governance.api.base import StrictSerializer
from governance.api.serializers.common import ROLES, EmailOf, id_field
from governance.models import Posture, validate_retention_days


class OrganizationSerializer(serializers.Serializer):
    id = id_field()
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
    audit_retention_days = serializers.IntegerField(
        max_value=36500,
        required=False,
        validators=[validate_retention_days],
        help_text="Days audit events are kept: at least IGRIS_AUDIT_RETENTION_MIN_DAYS (183 by "
        "default; EU AI Act Art. 19 and 26(6): six months).",
    )
    redact_argument_keys = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=200, required=False
    )


# --- members and invitations ----------------------------------------------------------------


class MemberSerializer(serializers.Serializer):
    id = id_field()
    user_id = id_field()
    email = serializers.EmailField(source="user.email")
    role = serializers.ChoiceField(ROLES)
    created_at = serializers.DateTimeField()


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(ROLES)


class InvitationSerializer(serializers.Serializer):
    id = id_field()
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
