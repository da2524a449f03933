"""Policies: the draft (readable list and JSON editor), publish, versions with diffs, rollback,
and a dry run that explains which rule decides a call and why each earlier one did not."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F, Func, IntegerField, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance import services
from governance.models import ApiKey, PolicyDraft, PolicyVersion
from governance.permissions import Action, Role
from governance.policy import (
    CallContext,
    Explanation,
    PolicyValidationError,
    compile_rules,
    validate_rules,
)
from governance.policy.rules import DAYS, KNOWN_METHODS
from governance.selectors import servers_for_org
from governance.views.base import Console, add_service_error, console_render, org_required

VERSIONS_ON_PAGE = 10
VERSIONS_PER_PAGE = 50
DRAFT = "draft"


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


def _version_get(console: Console, version_id: int) -> PolicyVersion:
    version = (
        PolicyVersion.objects.filter(org=console.org, pk=version_id)
        .select_related("published_by")
        .first()
    )
    if version is None:
        raise Http404("no such policy version in this organisation")
    return version


def _draft_rules(console: Console) -> tuple[PolicyDraft | None, list[dict[str, Any]]]:
    draft = PolicyDraft.objects.filter(org=console.org).select_related("updated_by").first()
    return draft, list(draft.rules) if draft else []


# --- showing rules -----------------------------------------------------------------------------


def _values(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _time_text(window: dict[str, Any]) -> str:
    days = window.get("days")
    if isinstance(days, list) and days:
        day_text = "every day" if sorted(days, key=DAYS.index) == list(DAYS) else _values(days)
    else:
        day_text = "every day"
    hours = f" {window['start']} to {window['end']}" if "start" in window else ""
    return f"{day_text}{hours} ({window.get('tz', '?')})"


def rule_view(index: int, document: Any) -> dict[str, Any]:
    """A validated rule document as labelled, readable parts for the templates."""
    doc = document if isinstance(document, dict) else {}
    match = doc.get("match") or {}
    parts: list[tuple[str, str]] = []
    for key, label in (
        ("servers", "servers"),
        ("methods", "methods"),
        ("tools", "tools"),
        ("keys", "API keys"),
        ("key_tags", "key tags"),
        ("roles", "roles"),
    ):
        if key in match:
            parts.append((label, _values(match[key])))
    for condition in match.get("arguments") or []:
        path, op = condition.get("path"), condition.get("op")
        if op == "exists":
            text = f"{path} is present" if condition.get("value", True) else f"{path} is absent"
        else:
            text = f"{path} {op} {json.dumps(condition.get('value'), ensure_ascii=False)}"
        parts.append(("argument", text))
    if "time" in match:
        parts.append(("time", _time_text(match["time"])))
    rate = doc.get("rate_limit")
    return {
        "index": index,
        "number": index + 1,
        "id": doc.get("id", "?"),
        "action": doc.get("action", "?"),
        "enabled": doc.get("enabled", True),
        "match": parts,
        "message": doc.get("message"),
        "description": doc.get("description"),
        "rate_limit": _rate_text(rate["limit"], rate["window_s"], rate["per"])
        if isinstance(rate, dict)
        else None,
    }


def _rate_text(limit: Any, window_s: Any, per: Any) -> str:
    return f"{limit} calls per {window_s} s per {per}"


def _rule_views(rules: list[Any], diff: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    views = [rule_view(i, doc) for i, doc in enumerate(rules)]
    if diff:
        for view in views:
            if view["id"] in diff["added"]:
                view["change"] = "added"
            elif view["id"] in diff["changed"]:
                view["change"] = "changed"
    return views


# The order people write rules in. PostgreSQL's jsonb keeps keys sorted by length, so without this
# the editor would show "match" before "action".
_KEY_ORDER: dict[str, tuple[str, ...]] = {
    "rule": ("id", "action", "enabled", "message", "description", "match", "rate_limit"),
    "match": ("servers", "methods", "tools", "keys", "key_tags", "roles", "arguments", "time"),
    "condition": ("path", "op", "value"),
    "time": ("days", "start", "end", "tz"),
    "rate_limit": ("limit", "window_s", "per"),
}


def _ordered(value: Any, kind: str) -> Any:
    if not isinstance(value, dict):
        return value
    order = _KEY_ORDER[kind]
    keys = [k for k in order if k in value] + [k for k in value if k not in order]
    out = {}
    for key in keys:
        item = value[key]
        if kind == "rule" and key in ("match", "rate_limit"):
            item = _ordered(item, key)
        elif kind == "match" and key == "time":
            item = _ordered(item, "time")
        elif kind == "match" and key == "arguments" and isinstance(item, list):
            item = [_ordered(c, "condition") for c in item]
        out[key] = item
    return out


def _pretty(rules: Any) -> str:
    if isinstance(rules, list):
        rules = [_ordered(rule, "rule") for rule in rules]
    return json.dumps(rules, indent=2, ensure_ascii=False)


def _has_changes(diff: dict[str, Any]) -> bool:
    return bool(diff["added"] or diff["removed"] or diff["changed"] or diff["reordered"])


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


class NoteForm(forms.Form):
    note = forms.CharField(
        max_length=300,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "What changed, and why"}),
    )


def _split_tags(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class DryRunForm(forms.Form):
    policy = forms.ChoiceField(label="Evaluate against")
    method = forms.ChoiceField(
        choices=[(m, m) for m in sorted(KNOWN_METHODS)], initial="tools/call"
    )
    server = forms.CharField(
        max_length=64, label="Server slug", widget=forms.TextInput(attrs={"list": "server-slugs"})
    )
    name = forms.CharField(
        max_length=500,
        required=False,
        label="Tool name",
        widget=forms.TextInput(attrs={"placeholder": "or prompt name, or resource URI"}),
    )
    arguments = forms.CharField(
        required=False,
        label="Arguments (JSON object)",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "code-editor"}),
    )
    key = forms.ChoiceField(required=False, label="API key")
    key_tags = forms.CharField(required=False, max_length=500, label="Key tags")
    role = forms.ChoiceField(
        required=False,
        choices=[("", "none")] + [(r.value, r.value) for r in Role],
        label="Member role",
    )

    def __init__(
        self, *args: Any, version_numbers: list[int], keys: list[ApiKey], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        policy: forms.ChoiceField = self.fields["policy"]  # type: ignore[assignment]
        policy.choices = [(DRAFT, "the draft")] + [
            (str(n), f"version {n}") for n in version_numbers
        ]
        key: forms.ChoiceField = self.fields["key"]  # type: ignore[assignment]
        key.choices = [("", "none")] + [(str(k.id), f"{k.name} ({k.display})") for k in keys]

    def clean_arguments(self) -> dict[str, Any] | None:
        text = self.cleaned_data["arguments"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"path": "/tmp"}.')
        return value

    def clean_key_tags(self) -> frozenset[str]:
        return _split_tags(self.cleaned_data["key_tags"])


def _explain(
    console: Console, form: DryRunForm, draft_rules: list[Any]
) -> tuple[Explanation | None, str]:
    """Evaluate the call in `form` against the chosen rule list; returns (explanation, label)."""
    data = form.cleaned_data
    version: int | None = None
    if data["policy"] == DRAFT:
        documents, label = draft_rules, "the draft"
    else:
        version = int(data["policy"])
        stored = PolicyVersion.objects.filter(org=console.org, number=version).first()
        if stored is None:
            form.add_error("policy", f"There is no version {version}.")
            return None, ""
        documents, label = stored.rules, f"version {version}"
    try:
        rules = validate_rules(documents)
    except PolicyValidationError as exc:
        form.add_error(None, f"These rules do not validate: {exc}")
        return None, label
    compiled = compile_rules(rules, posture=console.org.default_posture, version=version)  # type: ignore[arg-type]
    call = CallContext(
        org_id=str(console.org.id),
        server_slug=data["server"].strip(),
        method=data["method"],
        name=data["name"].strip() or None,
        arguments=data["arguments"],
        key_id=data["key"] or None,
        key_tags=data["key_tags"],
        role=data["role"] or None,
        now=timezone.now(),
    )
    return compiled.explain(call), label


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
    versions = list(_versions(console)[:VERSIONS_ON_PAGE])
    latest = versions[0] if versions else None
    latest_rules = (
        PolicyVersion.objects.filter(pk=latest.pk).values_list("rules", flat=True).first()
        if latest
        else None
    )
    diff = services.policy_diff(latest_rules or [], draft_rules)
    servers = list(servers_for_org(org=org))
    if dry_run_form is None:
        first = servers[0].slug if servers else ""
        dry_run_form = DryRunForm(
            initial={"policy": DRAFT, "method": "tools/call", "server": first},
            version_numbers=[v.number for v in versions],
            keys=list(ApiKey.objects.filter(org=org, revoked_at__isnull=True).order_by("name")),
        )
    manage = console.can(Action.POLICIES_MANAGE)
    if draft_form is None and manage:
        draft_form = DraftForm(initial={"rules": _pretty(draft_rules)})
    return console_render(
        request,
        console,
        "console/policies/index.html",
        {
            "draft": draft,
            "rules": _rule_views(draft_rules, diff if latest else None),
            "latest": latest,
            "diff": diff,
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
        services.policy_draft_update(org=console.org, actor=console.user, rules=documents)
    except services.PolicyRulesInvalid as exc:
        return _render_policies(
            request, console, draft_form=form, rule_errors=_located(exc.errors, documents)
        )
    except services.ServiceError as exc:
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
        version = services.policy_publish(org=console.org, actor=console.user, note=note)
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Published version {version.number}. The proxy enforces it within a second."
        )
    return redirect("console:policies")


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
def policy_version(request: HttpRequest, console: Console, version_id: int) -> HttpResponse:
    version = _version_get(console, version_id)
    previous = (
        PolicyVersion.objects.filter(org=console.org, number__lt=version.number)
        .order_by("-number")
        .first()
    )
    diff = services.policy_diff(previous.rules if previous else [], version.rules)
    removed_ids = set(diff["removed"])
    removed = [
        rule_view(i, doc)
        for i, doc in enumerate(previous.rules if previous else [])
        if isinstance(doc, dict) and doc.get("id") in removed_ids
    ]
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
            "rules": _rule_views(version.rules, diff),
            "removed": removed,
            "is_latest": latest_number == version.number,
            "rules_json": _pretty(version.rules),
            "rollback_form": NoteForm(),
        },
    )


@require_POST
@org_required(Action.POLICIES_MANAGE)
def policy_rollback(request: HttpRequest, console: Console, version_id: int) -> HttpResponse:
    version = _version_get(console, version_id)
    form = NoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Keep the note under 300 characters.")
        return redirect("console:policy_version", version_id=version.pk)
    note = form.cleaned_data["note"]
    try:
        new = services.policy_rollback(
            org=console.org, actor=console.user, number=version.number, note=note
        )
    except services.ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("console:policy_version", version_id=version.pk)
    messages.success(
        request,
        f"Published version {new.number} with the rules of version {version.number}; "
        "the draft now holds them too.",
    )
    return redirect("console:policies")


@org_required(Action.POLICIES_VIEW)
def policy_dry_run(request: HttpRequest, console: Console) -> HttpResponse:
    """Evaluate a hypothetical call (GET: it changes nothing, and auditors may use it)."""
    if not request.GET:
        return redirect(reverse("console:policies") + "#dry-run")
    org = console.org
    numbers = list(
        PolicyVersion.objects.filter(org=org).order_by("-number").values_list("number", flat=True)
    )
    keys = list(ApiKey.objects.filter(org=org, revoked_at__isnull=True).order_by("name"))
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
