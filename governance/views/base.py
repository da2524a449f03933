"""What every console page shares: the organisation guard, the layout context, error shaping.

A console view is written as `view(request, console, ...)`; `org_required(action)` resolves the
current membership (session-selected organisation, see `governance.middleware`), checks the role
against the one permission table and turns a service's `PermissionDenied` into the 403 page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import add_never_cache_headers

from governance.models import Membership, Organization, User
from governance.permissions import Action, PermissionDenied, Role, role_can
from governance.selectors.members import organizations_for_user
from governance.services.base import ServiceError

P = ParamSpec("P")


@dataclass(frozen=True)
class Console:
    """The signed-in member acting in their current organisation."""

    membership: Membership
    user: User

    @property
    def org(self) -> Organization:
        return self.membership.org

    @property
    def role(self) -> str:
        return self.membership.role

    def can(self, action: Action) -> bool:
        return role_can(self.role, action)


ConsoleView = Callable[Concatenate[HttpRequest, Console, P], HttpResponse]

# (label, url name, action needed, icon). Pages other engineers add appear in the navigation as
# soon as their URL name resolves, so the console never shows a dead link.
NAV: tuple[tuple[str, str, Action, str], ...] = (
    ("Overview", "console:home", Action.ORG_VIEW, "home"),
    ("Observe", "observe:dashboard", Action.AUDIT_READ, "activity"),
    ("Members", "console:members", Action.MEMBERS_VIEW, "users"),
    ("API keys", "console:keys", Action.KEYS_VIEW, "key"),
    ("MCP servers", "console:servers", Action.SERVERS_VIEW, "server"),
    ("Policies", "console:policies", Action.POLICIES_VIEW, "shield"),
    ("Sessions", "console:sessions", Action.SESSIONS_VIEW, "activity"),
    ("Audit log", "console:audit", Action.AUDIT_READ, "list"),
    ("Anomalies", "console:anomalies", Action.ANOMALIES_VIEW, "alert"),
    ("Ingest sources", "console:ingest_sources", Action.KEYS_VIEW, "inbox"),
    ("Compliance", "console:compliance", Action.COMPLIANCE_VIEW, "check"),
    ("Billing", "console:billing", Action.BILLING_VIEW, "card"),
    ("Settings", "console:org_settings", Action.ORG_VIEW, "settings"),
)


def _nav(request: HttpRequest, console: Console | None) -> list[dict[str, Any]]:
    if console is None:
        return []
    items = []
    for label, name, action, icon in NAV:
        if not console.can(action):
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        active = request.path == url if url == "/" else request.path.startswith(url)
        items.append({"label": label, "url": url, "icon": icon, "active": active})
    return items


def posted(request: HttpRequest) -> QueryDict | None:
    """Form data for a POST, even an empty one (`request.POST or None` would unbind it)."""
    return request.POST if request.method == "POST" else None


def console_render(
    request: HttpRequest,
    console: Console | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    no_store: bool = False,
) -> HttpResponse:
    """Render a console page with the layout's context: navigation, permissions, org switcher."""
    role = console.role if console else None
    ctx: dict[str, Any] = {
        "console": console,
        "in_console": True,
        "nav": _nav(request, console),
        "can": {action.name.lower(): role_can(role, action) for action in Action},
        "user_orgs": organizations_for_user(user=request.user)
        if request.user.is_authenticated
        else [],
    }
    ctx.update(context or {})
    response = render(request, template, ctx, status=status)
    if no_store:
        add_never_cache_headers(response)
    return response


_ACTION_TEXT: dict[Action, str] = {
    Action.ORG_UPDATE: "change the organisation's settings",
    Action.ORG_DELETE: "do this (owners only)",
    Action.MEMBERS_VIEW: "see the members",
    Action.MEMBERS_MANAGE: "manage members and invitations",
    Action.KEYS_VIEW: "see API keys",
    Action.KEYS_MANAGE_OWN: "create or revoke API keys",
    Action.KEYS_MANAGE_ALL: "manage other people's API keys or admin-scoped keys",
    Action.SERVERS_VIEW: "see MCP servers",
    Action.SERVERS_MANAGE: "add, change or delete MCP servers",
}


def forbidden(request: HttpRequest, console: Console | None, action: Action) -> HttpResponse:
    role = console.role if console else None
    return console_render(
        request,
        console,
        "403.html",
        {
            "role": Role(role).value if role else None,
            "action_text": _ACTION_TEXT.get(action, f"perform '{action.value}'"),
        },
        status=403,
    )


def org_required(
    action: Action,
) -> Callable[[ConsoleView[P]], Callable[Concatenate[HttpRequest, P], HttpResponse]]:
    """Sign-in, a current organisation and a role allowed to `action`; else redirect or 403."""

    def decorator(
        view: ConsoleView[P],
    ) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = request.membership_lazy()  # type: ignore[attr-defined]
            if membership is None:
                return redirect("console:org_create")
            console = Console(membership=membership, user=request.user)  # type: ignore[arg-type]
            if not console.can(action):
                return forbidden(request, console, action)
            try:
                return view(request, console, *args, **kwargs)
            except PermissionDenied as exc:
                # The service is the authority: a hidden button is a courtesy, this is the check.
                return forbidden(request, console, exc.action)

        return wrapper

    return decorator


def add_service_error(
    form: forms.Form, exc: ServiceError, field_map: Mapping[str, str] | None = None
) -> None:
    """Show a service's message on the matching form field, else above the form."""
    field = exc.field
    if field and field_map:
        field = field_map.get(field, field)
    message = exc.message
    if exc.field and message.startswith(f"{exc.field}: "):
        message = message[len(exc.field) + 2 :]
    if field and field in form.fields:
        form.add_error(field, message)
    else:
        form.add_error(None, message)
