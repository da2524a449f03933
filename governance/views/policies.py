"""Policies: the page with the draft (readable list and JSON editor), saving the draft, publishing
and the dry run. Versions, diffs and rollback are in `policy_versions`, the dry run's form and
evaluation in `policy_dry_run`, rule display in `policy_display`; the URLconf imports each view
from its own module."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance.models import PolicyDraft
from governance.permissions import Action
from governance.selectors.keys import api_keys_active_for_org
from governance.selectors.policies import (
    policy_draft_for_org,
    policy_version_numbers_for_org,
    policy_version_rules,
    policy_versions_listed_for_org,
)
from governance.selectors.servers import servers_for_org
from governance.services import policies as policy_services
from governance.services.base import ServiceError
from governance.services.policies import PolicyRulesInvalid, policy_diff, policy_draft_update
from governance.views.base import Console, add_service_error, console_render, org_required
from governance.views.policy_display import (
    RULES_PER_PAGE,
    _has_changes,
    _pretty,
    _rate_text,
    diff_shown,
    rule_page,
)
from governance.views.policy_dry_run import DRAFT, DryRunForm, _explain
from governance.views.policy_versions import (
    VERSIONS_ON_PAGE,
    NoteForm,
)

__all__ = ["DraftForm", "policies", "policy_draft_save", "policy_dry_run", "policy_publish"]


def _draft_rules(console: Console) -> tuple[PolicyDraft | None, list[dict[str, Any]]]:
    draft = policy_draft_for_org(org=console.org)
    return draft, list(draft.rules) if draft else []


# --- forms -------------------------------------------------------------------------------------


class DraftForm(forms.Form):
    rules = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 22, "spellcheck": "false", "class": "code-editor"}),
        label="Rules (JSON array)",
        strip=False,
        error_messages={"required": "Write a JSON array of rules; [] for none."},
    )

    def clean_rules(self) -> Any:
        text = self.cleaned_data["rules"]
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None


# --- the page ----------------------------------------------------------------------------------


def _render_policies(
    request: HttpRequest,
    console: Console,
    *,
    draft_form: DraftForm | None = None,
    rule_errors: list[dict[str, Any]] | None = None,
    dry_run_form: DryRunForm | None = None,
    dry_run: dict[str, Any] | None = None,
) -> HttpResponse:
    org = console.org
    draft, draft_rules = _draft_rules(console)
    versions = list(policy_versions_listed_for_org(org=console.org)[:VERSIONS_ON_PAGE])
    latest = versions[0] if versions else None
    latest_rules = policy_version_rules(version=latest) if latest else None
    diff = policy_diff(latest_rules or [], draft_rules)
    servers = list(servers_for_org(org=org))
    if dry_run_form is None:
        first = servers[0].slug if servers else ""
        dry_run_form = DryRunForm(
            initial={"policy": DRAFT, "method": "tools/call", "server": first},
            version_numbers=[v.number for v in versions],
            keys=api_keys_active_for_org(org=org),
        )
    manage = console.can(Action.POLICIES_MANAGE)
    # A long draft stays out of the editor until asked for: its JSON alone would grow the page
    # with every rule. A bound form (a refused save) keeps what was typed, whatever its length.
    editor_loaded = len(draft_rules) <= RULES_PER_PAGE or request.GET.get("editor") == "all"
    if draft_form is None and manage and editor_loaded:
        draft_form = DraftForm(initial={"rules": _pretty(draft_rules)})
    page, rules = rule_page(draft_rules, request.GET.get("rules"), diff if latest else None)
    return console_render(
        request,
        console,
        "console/policies/index.html",
        {
            "draft": draft,
            "rules": rules,
            "rule_page": page,
            "rule_count": len(draft_rules),
            "latest": latest,
            "diff": diff,
            "diff_shown": diff_shown(diff),
            "unpublished": _has_changes(diff) if latest else bool(draft_rules),
            "next_number": (latest.number + 1) if latest else 1,
            "versions": versions,
            "more_versions": len(versions) == VERSIONS_ON_PAGE,
            "draft_form": draft_form,
            "rule_errors": rule_errors or [],
            "dry_run_form": dry_run_form,
            "dry_run": dry_run,
            "servers": servers,
        },
    )


@org_required(Action.POLICIES_VIEW)
def policies(request: HttpRequest, console: Console) -> HttpResponse:
    return _render_policies(request, console)


def _located(errors: list[dict[str, Any]], documents: Any) -> list[dict[str, Any]]:
    """Name the rule each error belongs to (its position and, if it has one, its id)."""
    located = []
    for error in errors:
        index = error.get("index")
        rule_id = None
        if isinstance(documents, list) and index is not None and index < len(documents):
            candidate = documents[index]
            if isinstance(candidate, dict) and isinstance(candidate.get("id"), str):
                rule_id = candidate["id"]
        located.append({**error, "number": None if index is None else index + 1, "id": rule_id})
    return located


@require_POST
@org_required(Action.POLICIES_MANAGE)
def policy_draft_save(request: HttpRequest, console: Console) -> HttpResponse:
    form = DraftForm(request.POST)
    if not form.is_valid():
        return _render_policies(request, console, draft_form=form)
    documents = form.cleaned_data["rules"]
    try:
        policy_draft_update(org=console.org, actor=console.user, rules=documents)
    except PolicyRulesInvalid as exc:
        return _render_policies(
            request, console, draft_form=form, rule_errors=_located(exc.errors, documents)
        )
    except ServiceError as exc:
        add_service_error(form, exc)
        return _render_policies(request, console, draft_form=form)
    count = len(documents)
    messages.success(request, f"Saved the draft ({count} rule{'s' if count != 1 else ''}).")
    return redirect("console:policies")


@require_POST
@org_required(Action.POLICIES_MANAGE)
def policy_publish(request: HttpRequest, console: Console) -> HttpResponse:
    form = NoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Keep the note under 300 characters.")
        return redirect("console:policies")
    note = form.cleaned_data["note"]
    try:
        version = policy_services.policy_publish(org=console.org, actor=console.user, note=note)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Published version {version.number}. The proxy enforces it within a second."
        )
    return redirect("console:policies")


@org_required(Action.POLICIES_VIEW)
def policy_dry_run(request: HttpRequest, console: Console) -> HttpResponse:
    """Evaluate a hypothetical call (GET: it changes nothing, and auditors may use it)."""
    if not request.GET:
        return redirect(reverse("console:policies") + "#dry-run")
    org = console.org
    numbers = policy_version_numbers_for_org(org=org)
    keys = api_keys_active_for_org(org=org)
    form = DryRunForm(request.GET, version_numbers=numbers, keys=keys)
    result = None
    if form.is_valid():
        _draft, draft_rules = _draft_rules(console)
        explanation, label = _explain(console, form, draft_rules)
        if explanation is not None:
            decision = explanation.decision
            rate = decision.rate_limit
            result = {
                "label": label,
                "decision": decision,
                "rate_limit": _rate_text(rate.limit, rate.window_s, rate.per) if rate else None,
                "skipped": explanation.skipped,
                "posture": org.default_posture,
            }
    return _render_policies(request, console, dry_run_form=form, dry_run=result)
