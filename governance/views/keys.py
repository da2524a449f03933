"""API keys: list, create (plaintext shown once), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance.forms import ApiKeyForm
from governance.models import ApiKey
from governance.permissions import Action
from governance.public_url import proxy_url, public_base_url
from governance.selectors.keys import api_key_get_for_org, api_keys_for_org
from governance.selectors.servers import servers_for_org
from governance.services.api_keys import api_key_create, api_key_revoke
from governance.services.base import ServiceError
from governance.views.base import (
    Console,
    add_service_error,
    console_render,
    org_required,
    posted,
)


def sees_all_keys(console: Console) -> bool:
    """Key managers and read-only key viewers (CISO) see every key; developers only their own."""
    return console.can(Action.KEYS_MANAGE_ALL) or not console.can(Action.KEYS_MANAGE_OWN)


def visible_keys(console: Console) -> QuerySet[ApiKey]:
    created_by = None if sees_all_keys(console) else console.user
    return api_keys_for_org(org=console.org, created_by=created_by)


@org_required(Action.KEYS_VIEW)
def keys(request: HttpRequest, console: Console) -> HttpResponse:
    return console_render(
        request,
        console,
        "console/keys/list.html",
        {"keys": visible_keys(console), "sees_all": sees_all_keys(console)},
    )


@org_required(Action.KEYS_MANAGE_OWN)
def key_create(request: HttpRequest, console: Console) -> HttpResponse:
    servers = servers_for_org(org=console.org)
    form = ApiKeyForm(posted(request), actor_role=console.role, servers=servers)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            key, plaintext = api_key_create(
                org=console.org,
                actor=console.user,
                name=data["name"],
                scopes=data["scopes"],
                expires_at=form.expires_at(),
                allowed_server_ids=[server.pk for server in data["allowed_servers"]],
                tags=data["tags"],
            )
        except ServiceError as exc:
            add_service_error(form, exc, {"expires_at": "expires_on"})
        else:
            # The plaintext lives only in this response: not in a URL, not in the session.
            messages.success(request, f"Created the API key {key.name}.")
            allowed = list(data["allowed_servers"])
            example = allowed[0] if allowed else servers.first()
            example_slug = example.slug if example else "<server-slug>"
            return console_render(
                request,
                console,
                "console/keys/created.html",
                {
                    "key": key,
                    "plaintext": plaintext,
                    "example_slug": example_slug,
                    "example_url": proxy_url(request, example_slug),
                    "public_base": public_base_url(request),
                },
                no_store=True,
            )
    return console_render(request, console, "console/keys/create.html", {"form": form})


@require_POST
@org_required(Action.KEYS_MANAGE_OWN)
def key_revoke(request: HttpRequest, console: Console, key_id: str) -> HttpResponse:
    key = api_key_get_for_org(org=console.org, key_id=key_id)
    try:
        api_key_revoke(org=console.org, actor=console.user, key=key)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Revoked {key.name} ({key.display}). It stops working now.")
    return redirect("console:keys")
