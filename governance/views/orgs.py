"""Overview, organisation creation, switching, settings and deletion."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance.forms import (
    OrganizationCreateForm,
    OrganizationDeleteForm,
    OrganizationSettingsForm,
)
from governance.middleware import SESSION_ORG_KEY
from governance.models import McpServer, Membership
from governance.permissions import Action
from governance.public_url import proxy_url, public_base_url
from governance.selectors.servers import servers_for_org
from governance.services.base import ServiceError
from governance.services.organizations import (
    organization_create,
    organization_delete,
    organization_update,
)
from governance.views.base import (
    Console,
    add_service_error,
    console_render,
    forbidden,
    org_required,
    posted,
)
from governance.views.keys import visible_keys


@org_required(Action.ORG_VIEW)
def home(request: HttpRequest, console: Console) -> HttpResponse:
    org = console.org
    first_server = servers_for_org(org=org).filter(enabled=True).first()
    slug = first_server.slug if first_server else "<server-slug>"
    counts = {
        "members": Membership.objects.filter(org=org).count(),
        "keys": visible_keys(console).filter(revoked_at__isnull=True).count()
        if console.can(Action.KEYS_VIEW)
        else None,
        "servers": McpServer.objects.filter(org=org).count(),
    }
    return console_render(
        request,
        console,
        "console/home.html",
        {
            "counts": counts,
            "example_server": first_server,
            "example_slug": slug,
            "example_url": proxy_url(request, slug),
            "public_base": public_base_url(request),
        },
    )


@login_required
def org_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationCreateForm(posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            org = organization_create(
                name=form.cleaned_data["name"],
                owner=request.user,  # type: ignore[arg-type]
                slug=form.cleaned_data["slug"] or None,
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            request.session[SESSION_ORG_KEY] = str(org.id)
            messages.success(request, f"Created {org.name}. You are its owner.")
            return redirect("console:home")
    membership = request.membership_lazy()  # type: ignore[attr-defined]
    console = Console(membership=membership, user=request.user) if membership else None  # type: ignore[arg-type]
    return console_render(request, console, "console/org_create.html", {"form": form})


@require_POST
@login_required
def org_switch(request: HttpRequest) -> HttpResponse:
    org_id = request.POST.get("org_id", "")
    try:
        membership = Membership.objects.select_related("org").get(user=request.user, org_id=org_id)
    except (Membership.DoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404("you are not a member of this organisation") from exc
    request.session[SESSION_ORG_KEY] = str(membership.org_id)
    messages.success(request, f"Switched to {membership.org.name}.")
    return redirect("console:home")


def _settings_initial(console: Console) -> dict[str, object]:
    org = console.org
    return {
        "name": org.name,
        "default_posture": org.default_posture,
        "block_drifted_tools": org.block_drifted_tools,
        "auto_suspend_on_anomaly": org.auto_suspend_on_anomaly,
        "audit_retention_days": org.audit_retention_days,
        "redact_argument_keys": ", ".join(org.redact_argument_keys or []),
    }


def _render_settings(
    request: HttpRequest,
    console: Console,
    form: OrganizationSettingsForm,
    delete_form: OrganizationDeleteForm,
) -> HttpResponse:
    return console_render(
        request,
        console,
        "console/org_settings.html",
        {"form": form, "delete_form": delete_form},
    )


@org_required(Action.ORG_VIEW)
def org_settings(request: HttpRequest, console: Console) -> HttpResponse:
    delete_form = OrganizationDeleteForm(slug=console.org.slug)
    if request.method != "POST":
        form = OrganizationSettingsForm(initial=_settings_initial(console))
        return _render_settings(request, console, form, delete_form)
    if not console.can(Action.ORG_UPDATE):
        # Before validating: a member who may not change the settings is refused, not corrected.
        return forbidden(request, console, Action.ORG_UPDATE)
    form = OrganizationSettingsForm(request.POST)
    if form.is_valid():
        try:
            organization_update(org=console.org, actor=console.user, **form.cleaned_data)
        except ServiceError as exc:
            console.org.refresh_from_db()
            add_service_error(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("console:org_settings")
    return _render_settings(request, console, form, delete_form)


@require_POST
@org_required(Action.ORG_DELETE)
def org_delete(request: HttpRequest, console: Console) -> HttpResponse:
    org = console.org
    delete_form = OrganizationDeleteForm(request.POST, slug=org.slug)
    if not delete_form.is_valid():
        form = OrganizationSettingsForm(initial=_settings_initial(console))
        return _render_settings(request, console, form, delete_form)
    name = org.name
    organization_delete(org=org, actor=console.user)
    request.session.pop(SESSION_ORG_KEY, None)
    messages.success(request, f"Deleted {name} and everything in it.")
    return redirect("console:home")
