"""Anomalies the proxy detected: list with filters, acknowledge, resolve with a note."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import ApiView
from governance.api.pagination import KeysetPaginator, page_of
from governance.api.serializers import (
    AnomalyFilters,
    AnomalySerializer,
    EmptySerializer,
    ResolveSerializer,
)
from governance.permissions import Action
from governance.selectors.anomalies import anomalies_for_org, anomaly_get_for_org
from governance.services.anomalies import anomaly_acknowledge, anomaly_resolve


class AnomalyListView(ApiView):
    access = {"GET": Action.ANOMALIES_VIEW}
    query = {"GET": AnomalyFilters}
    paginator = KeysetPaginator("-created_at", "id")

    @extend_schema(responses=page_of(AnomalySerializer), summary="List anomalies")
    def get(self, request: Request) -> Response:
        anomalies = anomalies_for_org(org=self.org)
        if self.params.get("status"):
            anomalies = anomalies.filter(status=self.params["status"])
        if self.params.get("kind"):
            anomalies = anomalies.filter(kind=self.params["kind"])
        return Response(self.page(anomalies, AnomalySerializer))


class AnomalyDetailView(ApiView):
    access = {"GET": Action.ANOMALIES_VIEW}

    @extend_schema(responses=AnomalySerializer, summary="One anomaly")
    def get(self, request: Request, anomaly_id: str) -> Response:
        anomaly = anomaly_get_for_org(org=self.org, anomaly_id=anomaly_id)
        return Response(AnomalySerializer(anomaly).data)


class AnomalyAcknowledgeView(ApiView):
    access = {"POST": Action.ANOMALIES_MANAGE}

    @extend_schema(
        request=EmptySerializer, responses=AnomalySerializer, summary="Acknowledge an anomaly"
    )
    def post(self, request: Request, anomaly_id: str) -> Response:
        anomaly = anomaly_get_for_org(org=self.org, anomaly_id=anomaly_id)
        self.body(EmptySerializer)
        anomaly_acknowledge(org=self.org, actor=self.actor, anomaly=anomaly)
        return Response(
            AnomalySerializer(anomaly_get_for_org(org=self.org, anomaly_id=anomaly.pk)).data
        )


class AnomalyResolveView(ApiView):
    access = {"POST": Action.ANOMALIES_MANAGE}

    @extend_schema(
        request=ResolveSerializer, responses=AnomalySerializer, summary="Resolve with a note"
    )
    def post(self, request: Request, anomaly_id: str) -> Response:
        anomaly = anomaly_get_for_org(org=self.org, anomaly_id=anomaly_id)
        data = self.body(ResolveSerializer)
        anomaly_resolve(org=self.org, actor=self.actor, anomaly=anomaly, note=data["note"])
        return Response(
            AnomalySerializer(anomaly_get_for_org(org=self.org, anomaly_id=anomaly.pk)).data
        )
