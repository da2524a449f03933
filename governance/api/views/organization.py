"""The current organisation (the one the key or console session belongs to) and its settings."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import ApiView
from governance.api.serializers import OrganizationSerializer, OrganizationUpdateSerializer
from governance.permissions import Action
from governance.services.organizations import organization_update


class OrganizationView(ApiView):
    access = {"GET": Action.ORG_VIEW, "PATCH": Action.ORG_UPDATE}

    @extend_schema(responses=OrganizationSerializer, summary="The current organisation")
    def get(self, request: Request) -> Response:
        return Response(OrganizationSerializer(self.org).data)

    @extend_schema(
        request=OrganizationUpdateSerializer,
        responses=OrganizationSerializer,
        summary="Change the organisation's settings",
    )
    def patch(self, request: Request) -> Response:
        changes = self.body(OrganizationUpdateSerializer)
        org = organization_update(org=self.org, actor=self.actor, **changes)
        return Response(OrganizationSerializer(org).data)
