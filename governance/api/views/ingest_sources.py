"""Ingest sources: the outside gateways that send events to /api/v1/ingest/<provider>.

The signing secret is returned when a source is created or rotated, and never again.
Who may manage them follows API keys: they are credentials for machines.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import ApiView
from governance.api.idempotency import idempotent
from governance.api.pagination import KeysetPaginator, PageQuery, page_of
from governance.api.permissions import Access
from governance.api.serializers import (
    IngestSourceCreateSerializer,
    IngestSourceSecretSerializer,
    IngestSourceSerializer,
)
from governance.models import IngestSource, Organization
from governance.permissions import Action
from governance.services.ingest_sources import (
    ingest_source_create,
    ingest_source_delete,
    ingest_source_rotate,
)

MANAGE = Access(Action.KEYS_MANAGE_OWN, admin=True)
NO_STORE = {"Cache-Control": "no-store"}


def _sources(org: Organization) -> QuerySet[IngestSource]:
    return IngestSource.objects.filter(org=org).select_related("created_by")


def _source(org: Organization, source_id: str) -> IngestSource:
    try:
        return _sources(org).get(pk=source_id)
    except (IngestSource.DoesNotExist, ValueError, ValidationError):
        raise Http404("no such ingest source in this organisation") from None


class IngestSourceListView(ApiView):
    access = {"GET": Action.KEYS_VIEW, "POST": MANAGE}
    query = {"GET": PageQuery}
    paginator = KeysetPaginator("-created_at", "id")

    @extend_schema(responses=page_of(IngestSourceSerializer), summary="List ingest sources")
    def get(self, request: Request) -> Response:
        return Response(self.page(_sources(self.org), IngestSourceSerializer))

    @extend_schema(
        request=IngestSourceCreateSerializer,
        responses={201: IngestSourceSecretSerializer},
        summary="Create an ingest source (its signing secret is returned once, here)",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.body(IngestSourceCreateSerializer)
        source, secret = ingest_source_create(
            org=self.org, actor=self.actor, name=data["name"], provider=data["provider"]
        )
        body = dict(IngestSourceSerializer(source).data, secret=secret)
        return Response(body, status=status.HTTP_201_CREATED, headers=NO_STORE)


class IngestSourceDetailView(ApiView):
    # Deleting, like rotating, cuts the sender off: key managers only.
    access = {"GET": Action.KEYS_VIEW, "DELETE": Access(Action.KEYS_MANAGE_ALL, admin=True)}

    @extend_schema(responses=IngestSourceSerializer, summary="One ingest source (never its secret)")
    def get(self, request: Request, source_id: str) -> Response:
        return Response(IngestSourceSerializer(_source(self.org, source_id)).data)

    @extend_schema(
        responses={204: None},
        summary="Delete an ingest source (its signature is refused from now on; "
        "what it sent stays in the audit log)",
    )
    def delete(self, request: Request, source_id: str) -> Response:
        ingest_source_delete(org=self.org, actor=self.actor, source=_source(self.org, source_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class IngestSourceRotateView(ApiView):
    # Rotating breaks the sender until it gets the new secret: key managers only.
    access = {"POST": Access(Action.KEYS_MANAGE_ALL, admin=True)}

    @extend_schema(
        request=None,
        responses={200: IngestSourceSecretSerializer},
        summary="Replace the signing secret (the old one stops working at once)",
    )
    def post(self, request: Request, source_id: str) -> Response:
        source, secret = ingest_source_rotate(
            org=self.org, actor=self.actor, source=_source(self.org, source_id)
        )
        body = dict(IngestSourceSerializer(source).data, secret=secret)
        return Response(body, headers=NO_STORE)
