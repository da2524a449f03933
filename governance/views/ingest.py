"""Ingest sources in the console: the gateways that send their events to igris, each with its own
signing secret (shown once, when created or rotated)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance import ingest_signing as signing
from governance.models import IngestProvider, IngestSource
from governance.permissions import Action
from governance.public_url import public_base_url
from governance.selectors.ingest_sources import ingest_source_get_for_org, ingest_sources_for_org
from governance.services import ingest_sources as ingest_source_services
from governance.services.base import ServiceError
from governance.views.base import (
    Console,
    add_service_error,
    console_render,
    org_required,
    posted,
)


class IngestSourceForm(forms.Form):
    name = forms.CharField(
        max_length=120,
        widget=forms.TextInput(
            attrs={"placeholder": "e.g. gateway-eu production", "autofocus": True}
        ),
        help_text="Say which gateway or collector sends with it.",
    )
    provider = forms.ChoiceField(
        choices=IngestProvider.choices,
        help_text="The payload shape that gateway sends.",
    )


def may_manage(console: Console, source: IngestSource) -> bool:
    return console.can(Action.KEYS_MANAGE_ALL) or (
        console.can(Action.KEYS_MANAGE_OWN) and source.created_by_id == console.user.pk
    )


@org_required(Action.KEYS_VIEW)
def ingest_sources(request: HttpRequest, console: Console) -> HttpResponse:
    sources = ingest_sources_for_org(org=console.org)
    for source in sources:
        source.manageable = may_manage(console, source)  # type: ignore[attr-defined]
    return console_render(
        request,
        console,
        "console/ingest/list.html",
        {"sources": sources, "endpoint": f"{public_base_url(request)}/api/v1/ingest/"},
    )


def _secret_page(
    request: HttpRequest, console: Console, source: IngestSource, secret: str, *, rotated: bool
) -> HttpResponse:
    # The secret lives only in this response: not in a URL, not in the session.
    return console_render(
        request,
        console,
        "console/ingest/secret.html",
        {
            "source": source,
            "secret": secret,
            "rotated": rotated,
            "endpoint": f"{public_base_url(request)}/api/v1/ingest/{source.provider}",
            "source_header": signing.SOURCE_HEADER,
            "signature_header": signing.SIGNATURE_HEADER,
            "tolerance_min": signing.TOLERANCE_S // 60,
        },
        no_store=True,
    )


@org_required(Action.KEYS_MANAGE_OWN)
def ingest_source_create(request: HttpRequest, console: Console) -> HttpResponse:
    form = IngestSourceForm(posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            source, secret = ingest_source_services.ingest_source_create(
                org=console.org,
                actor=console.user,
                name=form.cleaned_data["name"],
                provider=form.cleaned_data["provider"],
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Created the ingest source {source.name}.")
            return _secret_page(request, console, source, secret, rotated=False)
    return console_render(request, console, "console/ingest/create.html", {"form": form})


@require_POST
@org_required(Action.KEYS_MANAGE_OWN)
def ingest_source_rotate(request: HttpRequest, console: Console, source_id: str) -> HttpResponse:
    # Someone else's source without KEYS_MANAGE_ALL: the service refuses (403 page).
    source, secret = ingest_source_services.ingest_source_rotate(
        org=console.org,
        actor=console.user,
        source=ingest_source_get_for_org(org=console.org, source_id=source_id),
    )
    messages.success(request, f"Rotated the secret of {source.name}; the old one is refused now.")
    return _secret_page(request, console, source, secret, rotated=True)


@require_POST
@org_required(Action.KEYS_MANAGE_OWN)
def ingest_source_delete(request: HttpRequest, console: Console, source_id: str) -> HttpResponse:
    source = ingest_source_get_for_org(org=console.org, source_id=source_id)
    ingest_source_services.ingest_source_delete(org=console.org, actor=console.user, source=source)
    messages.success(request, f"Deleted {source.name}. Its requests are refused from now on.")
    return redirect("console:ingest_sources")
