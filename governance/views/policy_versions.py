"""Policy versions: the paginated history, one version with its diff against the one before, and
rollback (republishing an old version's rules as a new version)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F, Func, IntegerField, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from governance.models import PolicyVersion
from governance.permissions import Action
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


class JsonArrayLength(Func):
    """Rule count of a stored version without loading its rules (PostgreSQL and SQLite)."""

    function = "jsonb_array_length"
    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="json_array_length", **extra)


# --- reads (tenant-scoped) ---------------------------------------------------------------------


def _versions(console: Console) -> QuerySet[PolicyVersion]:
    return (
        PolicyVersion.objects.filter(org=console.org)
        .select_related("published_by")
        .defer("rules")
        .annotate(rule_count=JsonArrayLength(F("rules")))
        .order_by("-number")
    )


def _version_get(console: Console, org_slug: str, number: int) -> PolicyVersion:
    """Version `number` of the current organisation's policy. Another organisation's policy, even
    one the user also belongs to, is as absent here as a version that does not exist."""
    version = None
    if org_slug == console.org.slug:
        version = (
            PolicyVersion.objects.filter(org=console.org, number=number)
            .select_related("published_by")
            .first()
        )
    if version is None:
        raise Http404("no such policy version in this organisation")
    return version


class NoteForm(forms.Form):
    note = forms.CharField(
        max_length=300,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "What changed, and why"}),
    )


@org_required(Action.POLICIES_VIEW)
def policy_versions(request: HttpRequest, console: Console) -> HttpResponse:
    page = Paginator(_versions(console), VERSIONS_PER_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    if page.number == 1:
        live_number = rows[0].number if rows else None
    else:
        live_number = (
            PolicyVersion.objects.filter(org=console.org)
            .order_by("-number")
            .values_list("number", flat=True)
            .first()
        )
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
    version = _version_get(console, org_slug, number)
    previous = (
        PolicyVersion.objects.filter(org=console.org, number__lt=version.number)
        .order_by("-number")
        .first()
    )
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
    latest_number = (
        PolicyVersion.objects.filter(org=console.org).order_by("-number")
        .values_list("number", flat=True)
        .first()
    )  # fmt: skip
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
    version = _version_get(console, org_slug, number)
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
