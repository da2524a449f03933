"""Agent sessions: list, detail, kill / suspend / resume, and stops for a key, a server or the
whole organisation (with lifting)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from governance.models import AgentSession, McpServer, SessionState
from governance.permissions import Action
from governance.selectors.anomalies import anomalies_for_session
from governance.selectors.keys import api_key_get_for_org, api_keys_active_for_org
from governance.selectors.servers import server_get_for_org, servers_for_org
from governance.selectors.sessions import session_detail_get_for_org, sessions_filtered_for_org
from governance.services import sessions as session_services
from governance.services.base import ServiceError
from governance.services.sessions import (
    kill_lift,
    org_emergency_stop,
    sessions_kill_for_key,
    sessions_kill_for_server,
)
from governance.views.base import Console, console_render, org_required

SESSIONS_PER_PAGE = 50


# --- forms -------------------------------------------------------------------------------------


class SessionFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *SessionState.choices])
    server = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, servers: list[McpServer], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server: forms.ChoiceField = self.fields["server"]  # type: ignore[assignment]
        server.choices = [("", "Any server")] + [(str(s.id), s.name) for s in servers]

    def value(self, name: str) -> str:
        return self.cleaned_data.get(name, "") if self.is_valid() else ""


class EmergencyStopForm(forms.Form):
    reason = forms.CharField(max_length=300, required=False)
    confirm_slug = forms.CharField(label="Type the organisation's slug to confirm")

    def __init__(self, *args: Any, slug: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slug = slug

    def clean_confirm_slug(self) -> str:
        value = self.cleaned_data["confirm_slug"].strip()
        if value != self.slug:
            raise forms.ValidationError(f"Type '{self.slug}' exactly to stop every agent.")
        return value


# --- pages -------------------------------------------------------------------------------------


def _render_sessions(
    request: HttpRequest, console: Console, *, emergency_form: EmergencyStopForm | None = None
) -> HttpResponse:
    servers = list(servers_for_org(org=console.org))
    filters = SessionFilterForm(request.GET or None, servers=servers)
    state, server_id = filters.value("state"), filters.value("server")
    page = Paginator(
        sessions_filtered_for_org(org=console.org, state=state, server_id=server_id),
        SESSIONS_PER_PAGE,
    ).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    can_kill = console.can(Action.SESSIONS_KILL)
    return console_render(
        request,
        console,
        "console/sessions/list.html",
        {
            "page": page,
            "sessions": list(page.object_list),
            "filters": filters,
            "filtered": bool(state or server_id),
            "query": query.urlencode(),
            "servers": servers,
            "keys": api_keys_active_for_org(org=console.org) if can_kill else [],
            "emergency_form": emergency_form or EmergencyStopForm(slug=console.org.slug),
            "here": request.get_full_path(),
        },
    )


@org_required(Action.SESSIONS_VIEW)
def sessions(request: HttpRequest, console: Console) -> HttpResponse:
    return _render_sessions(request, console)


@org_required(Action.SESSIONS_VIEW)
def session_detail(request: HttpRequest, console: Console, session_id: str) -> HttpResponse:
    session = session_detail_get_for_org(org=console.org, session_id=session_id)
    anomalies = anomalies_for_session(org=console.org, session=session)
    return console_render(
        request,
        console,
        "console/sessions/detail.html",
        {
            "session": session,
            "anomalies": list(anomalies[:20]),
            "here": request.get_full_path(),
        },
    )


# --- one session -------------------------------------------------------------------------------


def _back(request: HttpRequest) -> HttpResponse:
    """Return to the page the form was on (a same-site path only), else the sessions list."""
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("console:sessions")


def _short(session: AgentSession) -> str:
    return session.id if len(session.id) <= 16 else f"{session.id[:12]}…"


@require_POST
@org_required(Action.SESSIONS_KILL)
def session_kill(request: HttpRequest, console: Console, session_id: str) -> HttpResponse:
    session = session_detail_get_for_org(org=console.org, session_id=session_id)
    try:
        session_services.session_kill(
            org=console.org,
            actor=console.user,
            session=session,
            reason=request.POST.get("reason", ""),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Killed session {_short(session)}. Its next request is refused.")
    return _back(request)


@require_POST
@org_required(Action.SESSIONS_KILL)
def session_suspend(request: HttpRequest, console: Console, session_id: str) -> HttpResponse:
    session = session_detail_get_for_org(org=console.org, session_id=session_id)
    try:
        session_services.session_suspend(
            org=console.org,
            actor=console.user,
            session=session,
            reason=request.POST.get("reason", ""),
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Suspended session {_short(session)}. Resume it to let it call again."
        )
    return _back(request)


@require_POST
@org_required(Action.SESSIONS_KILL)
def session_resume(request: HttpRequest, console: Console, session_id: str) -> HttpResponse:
    session = session_detail_get_for_org(org=console.org, session_id=session_id)
    try:
        session_services.session_resume(org=console.org, actor=console.user, session=session)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Resumed session {_short(session)}.")
    return _back(request)


# --- stops -------------------------------------------------------------------------------------


def _plural(count: int) -> str:
    return f"{count} session{'s' if count != 1 else ''}"


@require_POST
@org_required(Action.SESSIONS_KILL)
def sessions_stop(request: HttpRequest, console: Console) -> HttpResponse:
    """Kill every session of a key or a server and refuse their new requests until lifted; or
    stop the whole organisation, confirmed by typing its slug."""
    scope = request.POST.get("scope", "")
    reason = request.POST.get("reason", "")
    org, actor = console.org, console.user
    try:
        if scope == "key":
            try:
                key = api_key_get_for_org(org=org, key_id=request.POST.get("key_id"))
            except Http404:
                messages.error(request, "Choose one of the organisation's API keys.")
                return redirect("console:sessions")
            count = sessions_kill_for_key(org=org, actor=actor, key=key, reason=reason)
            messages.success(
                request,
                f"Stopped the API key {key.name}: killed {_plural(count)}; "
                "its new requests are refused until you lift the stop.",
            )
        elif scope == "server":
            try:
                server = server_get_for_org(org=org, server_id=request.POST.get("server_id"))
            except Http404:
                messages.error(request, "Choose one of the organisation's MCP servers.")
                return redirect("console:sessions")
            count = sessions_kill_for_server(org=org, actor=actor, server=server, reason=reason)
            messages.success(
                request,
                f"Stopped {server.name}: killed {_plural(count)}; "
                "new requests to it are refused until you lift the stop.",
            )
        elif scope == "org":
            form = EmergencyStopForm(request.POST, slug=org.slug)
            if not form.is_valid():
                return _render_sessions(request, console, emergency_form=form)
            count = org_emergency_stop(org=org, actor=actor, reason=form.cleaned_data["reason"])
            messages.warning(
                request,
                f"Emergency stop: killed {_plural(count)}. Every agent of {org.name} is refused "
                "until you lift the stop.",
            )
        else:
            messages.error(request, "Choose what to stop: an API key, a server or everything.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("console:sessions")


@require_POST
@org_required(Action.SESSIONS_KILL)
def sessions_lift(request: HttpRequest, console: Console) -> HttpResponse:
    """Lift a stop. The target is "org", "key:<id>" or "server:<id>"."""
    scope, _, target_id = request.POST.get("target", "").partition(":")
    try:
        kill_lift(org=console.org, actor=console.user, scope=scope, target_id=target_id or None)
    except ServiceError as exc:
        messages.error(request, exc.message)
    except (ValidationError, ValueError, TypeError):
        messages.error(request, "Choose a stop to lift.")
    else:
        what = {"org": "the emergency stop", "key": "the API key's stop"}.get(
            scope, "the server's stop"
        )
        messages.success(
            request, f"Lifted {what}. New requests go through again; killed sessions stay killed."
        )
    return redirect("console:sessions")
