"""Policy versions: the paginated history, one version with its diff against the one before, and
rollback (republishing an old version's rules as a new version)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance.permissions import Action
from governance.selectors.policies import (
    policy_latest_number_for_org,
    policy_version_before,
    policy_version_in_policy_get,
    policy_versions_listed_for_org,
)
from governance.services import policies as policy_services
from governance.services.base import ServiceError
from governance.services.policies import policy_diff
from governance.views.base import Console, console_render, org_required
from governance.views.policy_display import (
    RULES_PER_PAGE,
    _has_changes,
    _pretty,
    diff_shown,
    rule_page,
    rule_view,
)

VERSIONS_ON_PAGE = 10
VERSIONS_PER_PAGE = 50


class NoteForm(forms.Form):
    note = forms.CharField(
        max_length=300,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "What changed, and why"}),
    )


@org_required(Action.POLICIES_VIEW)
def policy_versions(request: HttpRequest, console: Console) -> HttpResponse:
    page = Paginator(policy_versions_listed_for_org(org=console.org), VERSIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = list(page.object_list)
    if page.number == 1:
        live_number = rows[0].number if rows else None
    else:
        live_number = policy_latest_number_for_org(org=console.org)
    return console_render(
        request,
        console,
        "console/policies/versions.html",
        {"page": page, "versions": rows, "live_number": live_number, "query": ""},
    )


@org_required(Action.POLICIES_VIEW)
def policy_version(
    request: HttpRequest, console: Console, org_slug: str, number: int
) -> HttpResponse:
    version = policy_version_in_policy_get(org=console.org, org_slug=org_slug, number=number)
    previous = policy_version_before(org=console.org, number=version.number)
    diff = policy_diff(previous.rules if previous else [], version.rules)
    removed_ids = set(diff["removed"])
    removed = [
        rule_view(i, doc)
        for i, doc in enumerate(previous.rules if previous else [])
        if isinstance(doc, dict) and doc.get("id") in removed_ids
    ]
    page, rules = rule_page(version.rules, request.GET.get("rules"), diff)
    # A long version's JSON comes on request, like the policies page's editor.
    json_loaded = len(version.rules) <= RULES_PER_PAGE or request.GET.get("json") == "all"
    latest_number = policy_latest_number_for_org(org=console.org)
    return console_render(
        request,
        console,
        "console/policies/version.html",
        {
            "version": version,
            "previous": previous,
            "diff": diff,
            "changed": _has_changes(diff),
            "diff_shown": diff_shown(diff),
            "rules": rules,
            "rule_page": page,
            "rule_count": len(version.rules),
            "removed": removed[:RULES_PER_PAGE],
            "more_removed": max(0, len(removed) - RULES_PER_PAGE),
            "is_latest": latest_number == version.number,
            "rules_json": _pretty(version.rules) if json_loaded else None,
            "rollback_form": NoteForm(),
        },
    )


@require_POST
@org_required(Action.POLICIES_MANAGE)
def policy_rollback(
    request: HttpRequest, console: Console, org_slug: str, number: int
) -> HttpResponse:
    version = policy_version_in_policy_get(org=console.org, org_slug=org_slug, number=number)
    form = NoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Keep the note under 300 characters.")
        return redirect("console:policy_version", org_slug=console.org.slug, number=version.number)
    note = form.cleaned_data["note"]
    try:
        new = policy_services.policy_rollback(
            org=console.org, actor=console.user, number=version.number, note=note
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("console:policy_version", org_slug=console.org.slug, number=version.number)
    messages.success(
        request,
        f"Published version {new.number} with the rules of version {version.number}; "
        "the draft now holds them too.",
    )
    return redirect("console:policies")
