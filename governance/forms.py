"""Console forms: they parse and pre-check input; the services remain the authority.

Each form mirrors one service's arguments. A `ServiceError` raised by the service is attached to
the matching field by `governance.views.base.add_service_error`, so the form shows one place for
every kind of mistake.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings

from governance.models import (
    SLUG_VALIDATOR,
    McpServer,
    Posture,
    Scope,
    UpstreamAuth,
    validate_retention_days,
)
from governance.permissions import Action, Role, role_can
from governance.services.servers import SERVER_FIELDS


def _split_csv(value: str) -> list[str]:
    return list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def role_label(role: str) -> str:
    return "CISO" if role == Role.CISO else role.title()


def role_choices(actor_role: str) -> list[tuple[str, str]]:
    """Roles the actor may grant: only an owner makes owners (services enforce the same)."""
    return [
        (role.value, role_label(role.value))
        for role in Role
        if role != Role.OWNER or actor_role == Role.OWNER
    ]


# --- organisations -----------------------------------------------------------------------------


class OrganizationCreateForm(forms.Form):
    name = forms.CharField(max_length=120, widget=forms.TextInput(attrs={"autofocus": True}))
    slug = forms.CharField(
        max_length=64,
        required=False,
        validators=[SLUG_VALIDATOR],
        help_text="Lowercase letters, digits, '-' or '_'. Derived from the name if blank.",
    )


class OrganizationSettingsForm(forms.Form):
    name = forms.CharField(max_length=120)
    default_posture = forms.ChoiceField(
        choices=Posture.choices,
        widget=forms.RadioSelect,
        help_text="Decision for a tool call that no policy rule matches.",
    )
    block_drifted_tools = forms.BooleanField(
        required=False,
        label="Block drifted tools",
        help_text="Refuse calls to a tool whose description changed until someone approves it.",
    )
    auto_suspend_on_anomaly = forms.BooleanField(
        required=False,
        label="Auto-suspend on anomaly",
        help_text="Suspend an agent session automatically when an anomaly fires.",
    )
    # The model's own check of the minimum (a setting), so the form shows it with the other errors;
    # the browser gets the minimum as the input's `min`.
    audit_retention_days = forms.IntegerField(
        max_value=36500,
        validators=[validate_retention_days],
        label="Audit retention (days)",
        help_text=(
            "EU AI Act Art. 19 and 26(6): logs of a high-risk AI system are kept for at least "
            "six months (183 days)."
        ),
    )
    redact_argument_keys = forms.CharField(
        required=False,
        label="Extra argument names to redact",
        help_text="Comma-separated. Secret-looking names (password, token, …) are always masked.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        minimum = settings.IGRIS_AUDIT_RETENTION_MIN_DAYS
        self.fields["audit_retention_days"].widget.attrs["min"] = minimum

    def clean_redact_argument_keys(self) -> list[str]:
        return _split_csv(self.cleaned_data["redact_argument_keys"])


class OrganizationDeleteForm(forms.Form):
    confirm_slug = forms.CharField(label="Type the organisation's slug to confirm")

    def __init__(self, *args: Any, slug: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slug = slug

    def clean_confirm_slug(self) -> str:
        value = self.cleaned_data["confirm_slug"].strip()
        if value != self.slug:
            raise forms.ValidationError(f"Type '{self.slug}' exactly to delete the organisation.")
        return value


# --- members -----------------------------------------------------------------------------------


class InvitationForm(forms.Form):
    email = forms.EmailField(
        label="E-mail address", widget=forms.EmailInput(attrs={"placeholder": "name@company.com"})
    )
    role = forms.ChoiceField()

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role_field: forms.ChoiceField = self.fields["role"]  # type: ignore[assignment]
        role_field.choices = role_choices(actor_role)
        role_field.initial = Role.DEVELOPER.value


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=[(r.value, role_label(r.value)) for r in Role])


# --- API keys ----------------------------------------------------------------------------------


def scope_choices(actor_role: str) -> list[tuple[str, str]]:
    """Admin-scoped keys act as an admin through the REST API, so only key managers mint them."""
    return [
        (value, label)
        for value, label in Scope.choices
        if value != Scope.ADMIN or role_can(actor_role, Action.KEYS_MANAGE_ALL)
    ]


class ServerChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: McpServer) -> str:  # type: ignore[override]
        return f"{obj.name} ({obj.slug})"


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=120,
        widget=forms.TextInput(attrs={"placeholder": "e.g. claude-code on ci", "autofocus": True}),
        help_text="Say who or what uses the key.",
    )
    scopes = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at the end of this day (UTC).",
    )
    allowed_servers = ServerChoiceField(
        queryset=McpServer.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Without a choice the key reaches every server of the organisation.",
    )
    tags = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "ci, team-payments"}),
        help_text="Comma-separated labels that policy rules can match.",
    )

    def __init__(self, *args: Any, actor_role: str, servers: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = scope_choices(actor_role)  # type: ignore[attr-defined]
        self.fields["scopes"].initial = [Scope.PROXY.value]
        self.fields["allowed_servers"].queryset = servers  # type: ignore[attr-defined]

    def clean_tags(self) -> list[str]:
        return _split_csv(self.cleaned_data["tags"])

    def expires_at(self) -> datetime | None:
        day: date | None = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


# --- MCP servers -------------------------------------------------------------------------------


class ServerForm(forms.Form):
    name = forms.CharField(max_length=120)
    slug = forms.CharField(
        max_length=64,
        validators=[SLUG_VALIDATOR],
        help_text="Part of the proxy URL: /proxy/<slug>/mcp.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    upstream_url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label="Upstream URL",
        widget=forms.URLInput(attrs={"placeholder": "https://mcp.example.com/mcp"}),
        help_text="The MCP server's Streamable HTTP endpoint.",
    )
    auth_type = forms.ChoiceField(
        choices=UpstreamAuth.choices, label="Type", initial=UpstreamAuth.NONE
    )
    auth_header_name = forms.CharField(
        max_length=100,
        required=False,
        label="Header name",
        widget=forms.TextInput(attrs={"placeholder": "X-Api-Key"}),
        help_text="Only for a custom header.",
    )
    credential = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again.",
    )
    clear_credential = forms.BooleanField(required=False, label="Remove the stored credential")
    connect_timeout_s = forms.FloatField(
        min_value=0.1, max_value=120, initial=5.0, label="Connect timeout (s)"
    )
    total_timeout_s = forms.FloatField(
        min_value=0.1, max_value=3600, initial=300.0, label="Total timeout (s)"
    )
    enabled = forms.BooleanField(required=False, initial=True)

    FIELDS = SERVER_FIELDS  # exactly what server_create/server_update accept

    def __init__(self, *args: Any, server: McpServer | None = None, **kwargs: Any) -> None:
        if server is not None and "initial" not in kwargs:
            kwargs["initial"] = {name: getattr(server, name) for name in self.FIELDS}
        super().__init__(*args, **kwargs)
        self.server = server
        if server is None:
            del self.fields["clear_credential"]
        elif server.has_credential:
            self.fields[
                "credential"
            ].help_text = (
                "A credential is stored. Leave blank to keep it; type a new one to replace it."
            )

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.FIELDS}

    def credential_value(self) -> str | None:
        """None keeps the stored credential, "" removes it, anything else replaces it."""
        if self.cleaned_data.get("clear_credential"):
            return ""
        return self.cleaned_data["credential"] or None
