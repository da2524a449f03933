"""Verification of the organisation's audit hash chain."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from compliance.audit.verify import verify_chain
from governance.api.base import ApiView
from governance.permissions import Action

# --- chain ------------------------------------------------------------------------------------


class ChainBreakSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    reason = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)


class ChainStatusSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="Events verified.")
    head_seq = serializers.IntegerField()
    checkpoint_seq = serializers.IntegerField(allow_null=True)
    first_break = ChainBreakSerializer(allow_null=True)


class AuditVerifyView(ApiView):
    access = {"GET": Action.COMPLIANCE_VIEW}

    @extend_schema(
        responses=ChainStatusSerializer, summary="Verify the organisation's audit hash chain"
    )
    def get(self, request: Request) -> Response:
        result = verify_chain(self.org.id)
        return Response(
            {
                "ok": result.ok,
                "checked": result.checked,
                "head_seq": result.head_seq,
                "checkpoint_seq": result.checkpoint_seq,
                "first_break": result.first_break.as_dict() if result.first_break else None,
            }
        )
