"""Django admin for platform operators. Secrets never appear: keys show only their prefix and
upstream credentials are write-only through the console/API."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from governance.models import (
    AgentSession,
    Anomaly,
    ApiKey,
    IngestSource,
    Invitation,
    KillSwitch,
    McpServer,
    Membership,
    Organization,
    PendingEvent,
    PolicyDraft,
    PolicyVersion,
    Tool,
    User,
)
from governance.services.base import ServiceError
from governance.services.sessions import session_kill, session_resume, session_suspend


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = [
        "email",
        "first_name",
        "last_name",
        "is_staff",
        "is_active",
        "date_joined",
        "last_login",
    ]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "default_posture",
        "block_drifted_tools",
        "auto_suspend_on_anomaly",
        "audit_retention_days",
        "created_at",
    ]
    list_filter = ["default_posture", "block_drifted_tools", "auto_suspend_on_anomaly"]
    search_fields = ["name", "slug"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "org__name", "org__slug"]
    list_select_related = ["user", "org"]
    autocomplete_fields = ["user", "org"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "org",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    ]
    list_filter = [
        "role",
        ("accepted_at", admin.EmptyFieldListFilter),
        ("revoked_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["email", "org__name"]
    list_select_related = ["org", "invited_by"]
    readonly_fields = ["token_hash", "created_at", "accepted_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display",
        "org",
        "scopes",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [
        ("revoked_at", admin.EmptyFieldListFilter),
        ("expires_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["name", "prefix", "org__name", "org__slug", "created_by__email"]
    list_select_related = ["org", "created_by"]
    readonly_fields = ["prefix", "salt", "secret_hash", "created_at", "last_used_at", "created_by"]
    exclude = ["salt", "secret_hash"]

    def has_add_permission(
        self, request
    ) -> bool:  # keys are created where the secret can be shown once
        return False


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "org", "upstream_url", "auth_type", "enabled", "updated_at"]
    list_filter = ["enabled", "auth_type", "transport"]
    search_fields = ["name", "slug", "upstream_url", "org__name", "org__slug"]
    list_select_related = ["org"]
    readonly_fields = ["id", "created_at", "updated_at", "has_credential"]


@admin.register(PendingEvent)
class PendingEventAdmin(admin.ModelAdmin):
    list_display = ["id", "org_id", "created_at"]
    readonly_fields = ["org_id", "payload", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# --- runtime objects -----------------------------------------------------------------------------


@admin.register(PolicyDraft)
class PolicyDraftAdmin(admin.ModelAdmin):
    list_display = ["org", "base_version", "updated_by", "updated_at"]
    search_fields = ["org__name", "org__slug"]
    list_select_related = ["org", "updated_by"]
    readonly_fields = ["org", "rules", "base_version", "updated_by", "updated_at"]

    def has_add_permission(self, request) -> bool:  # drafts change through the console or API
        return False


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = [
        "org",
        "number",
        "posture",
        "published_by",
        "published_at",
        "rolled_back_from",
        "note",
    ]
    list_filter = ["posture"]
    search_fields = ["org__name", "org__slug", "note"]
    list_select_related = ["org", "published_by"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # published versions are immutable
        return False


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "server",
        "org",
        "state",
        "first_seen_at",
        "last_seen_at",
        "approved_at",
    ]
    list_filter = ["state"]
    search_fields = ["name", "server__slug", "org__slug"]
    list_select_related = ["server", "org"]
    readonly_fields = ["fingerprint", "approved_fingerprint", "first_seen_at", "last_seen_at"]


def _session_action(service, label):
    def action(modeladmin, request, queryset):
        done = 0
        for session in queryset.select_related("org"):
            try:
                service(org=session.org, actor=request.user, session=session)
                done += 1
            except ServiceError as exc:
                modeladmin.message_user(request, f"{session.id}: {exc.message}", messages.WARNING)
        modeladmin.message_user(request, f"{label}: {done} session(s).", messages.SUCCESS)

    action.short_description = f"{label} selected sessions"
    action.__name__ = f"action_{label.lower()}"
    return action


@admin.register(AgentSession)
class AgentSessionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "org",
        "server_slug",
        "key",
        "client_name",
        "era",
        "state",
        "calls",
        "denied",
        "errors",
        "started_at",
        "last_seen_at",
    ]
    list_filter = ["state", "era"]
    search_fields = ["id", "org__slug", "server_slug", "client_name"]
    list_select_related = ["org", "key"]
    readonly_fields = [f.name for f in AgentSession._meta.fields]
    actions = [
        _session_action(session_kill, "Kill"),
        _session_action(session_suspend, "Suspend"),
        _session_action(session_resume, "Resume"),
    ]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Anomaly)
class AnomalyAdmin(admin.ModelAdmin):
    list_display = ["kind", "severity", "org", "server_slug", "tool", "status", "created_at"]
    list_filter = ["kind", "severity", "status"]
    search_fields = ["org__slug", "server_slug", "tool"]
    list_select_related = ["org"]
    readonly_fields = [
        "org",
        "session",
        "server_slug",
        "kind",
        "severity",
        "tool",
        "detail",
        "event_id",
        "created_at",
    ]


@admin.register(IngestSource)
class IngestSourceAdmin(admin.ModelAdmin):
    """Sources are created and rotated where the secret can be shown once (services); the admin
    shows who sends what, never the secret."""

    list_display = ["name", "provider", "org", "created_by", "created_at", "rotated_at"]
    list_filter = ["provider"]
    search_fields = ["name", "org__name", "org__slug"]
    list_select_related = ["org", "created_by"]
    readonly_fields = ["id", "org", "provider", "created_by", "created_at", "rotated_at"]
    exclude = ["secret_encrypted"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(KillSwitch)
class KillSwitchAdmin(admin.ModelAdmin):
    """Standing stops, read-only: they are set and lifted through the kill-switch services, which
    also update every proxy process (console Sessions page, API `sessions/kill-all/`)."""

    list_display = ["scope", "target_id", "org", "reason", "created_by", "created_at"]
    list_filter = ["scope"]
    search_fields = ["org__slug", "reason"]
    list_select_related = ["org", "created_by"]
    readonly_fields = ["org", "scope", "target_id", "reason", "created_by", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
