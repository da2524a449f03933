"""API keys: list, create (the secret is in that response only), revoke.

Developers see and revoke only the keys they created; key managers and the CISO see them all.
"""

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
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
)
from governance.models import ApiKey
from governance.permissions import Action
from governance.selectors.keys import api_key_visible_get, api_keys_visible
from governance.services.api_keys import api_key_create, api_key_revoke

MANAGE = Access(Action.KEYS_MANAGE_OWN, admin=True)


class ApiKeyListView(ApiView):
    access = {"GET": Action.KEYS_VIEW, "POST": MANAGE}
    query = {"GET": PageQuery}
    paginator = KeysetPaginator("-created_at", "id")

    @extend_schema(responses=page_of(ApiKeySerializer), summary="List API keys")
    def get(self, request: Request) -> Response:
        keys = api_keys_visible(org=self.org, role=self.principal.role, user=self.actor)
        return Response(self.page(keys, ApiKeySerializer))

    @extend_schema(
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyCreatedSerializer},
        summary="Create an API key (its secret is returned once, here)",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.body(ApiKeyCreateSerializer)
        key, plaintext = api_key_create(
            org=self.org,
            actor=self.actor,
            name=data["name"],
            scopes=data["scopes"],
            expires_at=data.get("expires_at"),
            allowed_server_ids=data.get("allowed_servers", []),
            tags=data.get("tags", []),
        )
        body = dict(ApiKeySerializer(key).data, secret=plaintext)
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiKeyDetailView(ApiView):
    access = {"GET": Action.KEYS_VIEW, "DELETE": MANAGE}

    def _get(self, key_id: str) -> ApiKey:
        return api_key_visible_get(
            org=self.org, role=self.principal.role, user=self.actor, key_id=key_id
        )

    @extend_schema(responses=ApiKeySerializer, summary="One API key (never its secret)")
    def get(self, request: Request, key_id: str) -> Response:
        return Response(ApiKeySerializer(self._get(key_id)).data)

    @extend_schema(responses={204: None}, summary="Revoke an API key")
    def delete(self, request: Request, key_id: str) -> Response:
        api_key_revoke(org=self.org, actor=self.actor, key=self._get(key_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
