"""Upstream MCP servers: CRUD (the credential is write-only), a connection test, a refresh of
the tool catalogue from the upstream, and the proxies' circuit breaker (shown on every server,
reset by hand)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api import upstream
from governance.api.base import ApiView
from governance.api.errors import ApiProblem
from governance.api.idempotency import idempotent
from governance.api.pagination import KeysetPaginator, PageQuery, page_of
from governance.api.serializers import (
    CircuitSerializer,
    ConnectionTestSerializer,
    EmptySerializer,
    ServerSerializer,
    ServerWriteSerializer,
    ToolRefreshSerializer,
    ToolSerializer,
)
from governance.permissions import Action
from governance.runtime.flags import Circuit
from governance.selectors.servers import (
    server_circuits,
    server_get_for_org,
    servers_for_org,
    tools_for_org,
)
from governance.services.servers import (
    server_circuit_reset,
    server_create,
    server_delete,
    server_update,
)
from governance.services.tools import tools_observe


def _service_fields(data: dict) -> tuple[str | None, dict]:
    fields = dict(data)
    return fields.pop("credential", None), fields


def _circuits(servers: list[Any]) -> dict[str, Any]:
    """Serializer context: the circuit breakers of these servers, in one hot-state read."""
    return {"circuits": server_circuits(server_ids=[server.id for server in servers])}


def _shown(server: Any) -> dict[str, Any]:
    return ServerSerializer(server, context=_circuits([server])).data


class ServerListView(ApiView):
    access = {"GET": Action.SERVERS_VIEW, "POST": Action.SERVERS_MANAGE}
    query = {"GET": PageQuery}
    paginator = KeysetPaginator("name", "id")

    @extend_schema(responses=page_of(ServerSerializer), summary="List upstream MCP servers")
    def get(self, request: Request) -> Response:
        return Response(self.page(servers_for_org(org=self.org), ServerSerializer, _circuits))

    @extend_schema(
        request=ServerWriteSerializer,
        responses={201: ServerSerializer},
        summary="Add an upstream MCP server",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        credential, fields = _service_fields(self.body(ServerWriteSerializer))
        server = server_create(org=self.org, actor=self.actor, credential=credential, **fields)
        return Response(_shown(server), status=status.HTTP_201_CREATED)


class ServerDetailView(ApiView):
    access = {
        "GET": Action.SERVERS_VIEW,
        "PATCH": Action.SERVERS_MANAGE,
        "DELETE": Action.SERVERS_MANAGE,
    }

    @extend_schema(responses=ServerSerializer, summary="One upstream MCP server")
    def get(self, request: Request, server_id: str) -> Response:
        server = server_get_for_org(org=self.org, server_id=server_id)
        return Response(_shown(server))

    @extend_schema(
        request=ServerWriteSerializer(partial=True),
        responses=ServerSerializer,
        summary="Change an upstream MCP server",
    )
    def patch(self, request: Request, server_id: str) -> Response:
        server = server_get_for_org(org=self.org, server_id=server_id)
        credential, fields = _service_fields(self.body(ServerWriteSerializer, partial=True))
        server = server_update(
            org=self.org, actor=self.actor, server=server, credential=credential, **fields
        )
        return Response(_shown(server))

    @extend_schema(responses={204: None}, summary="Delete an upstream MCP server")
    def delete(self, request: Request, server_id: str) -> Response:
        server = server_get_for_org(org=self.org, server_id=server_id)
        server_delete(org=self.org, actor=self.actor, server=server)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServerResetCircuitView(ApiView):
    access = {"POST": Action.SERVERS_MANAGE}

    @extend_schema(
        request=EmptySerializer,
        responses=CircuitSerializer,
        summary="Close an open circuit breaker: the proxies forward to the server again",
    )
    def post(self, request: Request, server_id: str) -> Response:
        server = server_get_for_org(org=self.org, server_id=server_id)
        self.body(EmptySerializer)
        server_circuit_reset(org=self.org, actor=self.actor, server=server)
        return Response(CircuitSerializer(Circuit()).data)


class ServerTestView(ApiView):
    # It sends the stored credential to the upstream, so it takes the right to manage servers.
    access = {"POST": Action.SERVERS_MANAGE}

    @extend_schema(
        request=EmptySerializer,
        responses={200: ConnectionTestSerializer},
        summary="Test the connection: send `initialize` and time the answer",
    )
    def post(self, request: Request, server_id: str) -> Response:
        server = server_get_for_org(org=self.org, server_id=server_id)
        self.body(EmptySerializer)
        report = upstream.probe_connection(server)
        return Response(ConnectionTestSerializer(report).data)


class ServerRefreshToolsView(ApiView):
    access = {"POST": Action.SERVERS_MANAGE}
    problems = {"POST": ("502",)}

    @extend_schema(
        request=EmptySerializer,
        responses=ToolRefreshSerializer,
        summary="Fetch tools/list from the upstream and record it (drift check)",
    )
    def post(self, request: Request, server_id: str) -> Response:
        server = server_get_for_org(org=self.org, server_id=server_id)
        self.body(EmptySerializer)
        try:
            listing = upstream.list_tools(server)
        except upstream.UpstreamProblem as exc:
            raise ApiProblem(502, "upstream_error", str(exc)) from None
        drifted = tools_observe(org_id=self.org.id, server_id=server.id, tools=listing.tools)
        tools = tools_for_org(org=self.org).filter(server=server).order_by("name", "id")
        return Response(
            {
                "protocol_version": listing.protocol_version,
                "observed": len(listing.tools),
                "drifted": drifted,
                "tools": ToolSerializer(tools, many=True).data,
            }
        )
