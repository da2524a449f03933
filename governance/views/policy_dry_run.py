"""The policy dry run: the form for a hypothetical call and its evaluation against the draft or a
published version, explaining which rule decides it and why each earlier one did not."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils import timezone

from governance.models import ApiKey, PolicyVersion
from governance.permissions import Role
from governance.policy import (
    CallContext,
    Explanation,
    PolicySnapshot,
    PolicyValidationError,
)
from governance.policy.rules import KNOWN_METHODS
from governance.views.base import Console

DRAFT = "draft"


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
        snapshot = PolicySnapshot.from_documents(
            org_id=str(console.org.id),
            version=version,
            posture=console.org.default_posture,
            documents=documents,
        )
    except PolicyValidationError as exc:
        form.add_error(None, f"These rules do not validate: {exc}")
        return None, label
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
    return snapshot.explain(call), label
