"""Django admin for platform operators. Secrets never appear: keys show only their prefix and
upstream credentials are write-only through the console/API."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from governance.models import (
    ApiKey,
    Invitation,
    McpServer,
    Membership,
    Organization,
    PendingEvent,
    User,
)


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
