"""The tool catalogue per server (rug-pull guard): list, detail, approve a changed tool."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import ApiView
from governance.api.pagination import KeysetPaginator, page_of
from governance.api.serializers import (
    EmptySerializer,
    ToolApprovedSerializer,
    ToolFilters,
    ToolSerializer,
)
from governance.models import Tool
from governance.permissions import Action
from governance.selectors.servers import tool_get_for_org, tools_for_org
from governance.services.tools import tool_approve


def approval_diff(tool: Tool) -> dict[str, Any]:
    """What approving would accept: the approved text and schema against the current ones."""
    changed = []
    if tool.approved_description != tool.description:
        changed.append("description")
    if tool.approved_input_schema != tool.input_schema:
        changed.append("input_schema")
    return {
        "changed": changed,
        "description": {"approved": tool.approved_description, "current": tool.description},
        "input_schema": {"approved": tool.approved_input_schema, "current": tool.input_schema},
    }


class ToolListView(ApiView):
    access = {"GET": Action.SERVERS_VIEW}
    query = {"GET": ToolFilters}
    paginator = KeysetPaginator("name", "id")

    @extend_schema(responses=page_of(ToolSerializer), summary="List tools (filter by server)")
    def get(self, request: Request) -> Response:
        tools = tools_for_org(org=self.org)
        if self.params.get("server"):
            tools = tools.filter(server_id=self.params["server"])
        if self.params.get("state"):
            tools = tools.filter(state=self.params["state"])
        return Response(self.page(tools, ToolSerializer))


class ToolDetailView(ApiView):
    access = {"GET": Action.SERVERS_VIEW}

    @extend_schema(responses=ToolSerializer, summary="One tool")
    def get(self, request: Request, tool_id: str) -> Response:
        return Response(ToolSerializer(tool_get_for_org(org=self.org, tool_id=tool_id)).data)


class ToolApproveView(ApiView):
    access = {"POST": Action.SERVERS_MANAGE}

    @extend_schema(
        request=EmptySerializer,
        responses=ToolApprovedSerializer,
        summary="Approve a changed tool; the answer shows what was accepted",
    )
    def post(self, request: Request, tool_id: str) -> Response:
        tool = tool_get_for_org(org=self.org, tool_id=tool_id)
        self.body(EmptySerializer)
        diff = approval_diff(tool)
        tool = tool_approve(org=self.org, actor=self.actor, tool=tool)
        tool = tool_get_for_org(org=self.org, tool_id=tool.pk)
        return Response({"tool": ToolSerializer(tool).data, "diff": diff})
