"""Upstream MCP servers: list, add, edit, delete. The credential is write-only. Each server shows
the proxies' circuit breaker, which a manager can reset."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance.forms import ServerForm
from governance.permissions import Action
from governance.public_url import proxy_url
from governance.selectors.servers import server_circuits, server_get_for_org, servers_for_org
from governance.services import servers as server_services
from governance.services.base import ServiceError
from governance.services.servers import server_update
from governance.views.base import (
    Console,
    add_service_error,
    console_render,
    org_required,
    posted,
)


@org_required(Action.SERVERS_VIEW)
def servers(request: HttpRequest, console: Console) -> HttpResponse:
    listed = list(servers_for_org(org=console.org))
    circuits = server_circuits(server_ids=[server.id for server in listed])
    rows = [
        {
            "server": server,
            "proxy_url": proxy_url(request, server.slug),
            "circuit": circuits[str(server.id)],
        }
        for server in listed
    ]
    return console_render(request, console, "console/servers/list.html", {"rows": rows})


@org_required(Action.SERVERS_MANAGE)
def server_create(request: HttpRequest, console: Console) -> HttpResponse:
    form = ServerForm(posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            server = server_services.server_create(
                org=console.org,
                actor=console.user,
                credential=form.credential_value(),
                **form.service_fields(),
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            url = proxy_url(request, server.slug)
            messages.success(request, f"Added {server.name}. Agents reach it at {url}")
            return redirect("console:servers")
    return console_render(
        request, console, "console/servers/form.html", {"form": form, "server": None}
    )


@org_required(Action.SERVERS_MANAGE)
def server_edit(request: HttpRequest, console: Console, server_id: str) -> HttpResponse:
    server = server_get_for_org(org=console.org, server_id=server_id)
    form = ServerForm(posted(request), server=server)
    if request.method == "POST" and form.is_valid():
        try:
            server = server_update(
                org=console.org,
                actor=console.user,
                server=server,
                credential=form.credential_value(),
                **form.service_fields(),
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Saved {server.name}.")
            return redirect("console:servers")
    return console_render(
        request,
        console,
        "console/servers/form.html",
        {
            "form": form,
            "server": server,
            "proxy_url": proxy_url(request, server.slug),
            "circuit": server_circuits(server_ids=[server.id])[str(server.id)],
        },
    )


@require_POST
@org_required(Action.SERVERS_MANAGE)
def server_circuit_reset(request: HttpRequest, console: Console, server_id: str) -> HttpResponse:
    server = server_get_for_org(org=console.org, server_id=server_id)
    try:
        server_services.server_circuit_reset(org=console.org, actor=console.user, server=server)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Reset the circuit breaker of {server.name}: calls go through.")
    return redirect("console:server_edit", server_id=server.id)


@require_POST
@org_required(Action.SERVERS_MANAGE)
def server_delete(request: HttpRequest, console: Console, server_id: str) -> HttpResponse:
    server = server_get_for_org(org=console.org, server_id=server_id)
    name = server.name
    server_services.server_delete(org=console.org, actor=console.user, server=server)
    messages.success(request, f"Deleted {name}. Agents can no longer reach it through igris.")
    return redirect("console:servers")
