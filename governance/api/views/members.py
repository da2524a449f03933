"""Members (list, change role, remove) and invitations (list open ones, create, revoke)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import ApiView
from governance.api.idempotency import idempotent
from governance.api.pagination import KeysetPaginator, PageQuery, page_of
from governance.api.permissions import Access
from governance.api.serializers import (
    InvitationCreateSerializer,
    InvitationSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
)
from governance.permissions import Action
from governance.public_url import public_base_url
from governance.selectors.members import (
    invitation_get_for_org,
    invitations_open_for_org,
    member_get_for_org,
    members_for_org,
)
from governance.services.members import (
    invitation_create,
    invitation_revoke,
    member_change_role,
    member_remove,
)

MANAGE = Access(Action.MEMBERS_MANAGE, admin=True)


class MemberListView(ApiView):
    access = {"GET": Action.MEMBERS_VIEW}
    query = {"GET": PageQuery}
    paginator = KeysetPaginator("created_at", "id")

    @extend_schema(responses=page_of(MemberSerializer), summary="List the members")
    def get(self, request: Request) -> Response:
        return Response(self.page(members_for_org(org=self.org), MemberSerializer))


class MemberDetailView(ApiView):
    access = {"GET": Action.MEMBERS_VIEW, "PATCH": MANAGE, "DELETE": MANAGE}

    @extend_schema(responses=MemberSerializer, summary="One member")
    def get(self, request: Request, member_id: str) -> Response:
        member = member_get_for_org(org=self.org, membership_id=member_id)
        return Response(MemberSerializer(member).data)

    @extend_schema(
        request=MemberUpdateSerializer, responses=MemberSerializer, summary="Change a role"
    )
    def patch(self, request: Request, member_id: str) -> Response:
        member = member_get_for_org(org=self.org, membership_id=member_id)
        data = self.body(MemberUpdateSerializer)
        member = member_change_role(
            org=self.org, actor=self.actor, membership=member, role=data["role"]
        )
        return Response(MemberSerializer(member).data)

    @extend_schema(responses={204: None}, summary="Remove a member")
    def delete(self, request: Request, member_id: str) -> Response:
        member = member_get_for_org(org=self.org, membership_id=member_id)
        member_remove(org=self.org, actor=self.actor, membership=member)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(ApiView):
    # Invitees' addresses are for member managers only (as in the console).
    access = {"GET": Access(Action.MEMBERS_MANAGE), "POST": MANAGE}
    query = {"GET": PageQuery}
    paginator = KeysetPaginator("-created_at", "id")

    @extend_schema(responses=page_of(InvitationSerializer), summary="List open invitations")
    def get(self, request: Request) -> Response:
        return Response(self.page(invitations_open_for_org(org=self.org), InvitationSerializer))

    @extend_schema(
        request=InvitationCreateSerializer,
        responses={201: InvitationSerializer},
        summary="Invite someone by e-mail",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.body(InvitationCreateSerializer)
        invitation, _token = invitation_create(
            org=self.org,
            actor=self.actor,
            email=data["email"],
            role=data["role"],
            accept_url_base=public_base_url(request),
        )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(ApiView):
    access = {"GET": Access(Action.MEMBERS_MANAGE), "DELETE": MANAGE}

    @extend_schema(responses=InvitationSerializer, summary="One invitation")
    def get(self, request: Request, invitation_id: str) -> Response:
        invitation = invitation_get_for_org(org=self.org, invitation_id=invitation_id)
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(responses={204: None}, summary="Revoke an invitation")
    def delete(self, request: Request, invitation_id: str) -> Response:
        invitation = invitation_get_for_org(org=self.org, invitation_id=invitation_id)
        invitation_revoke(org=self.org, actor=self.actor, invitation=invitation)
        return Response(status=status.HTTP_204_NO_CONTENT)
