"""Read-only admin for the audit log: staff may look, nobody may add, change or delete."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from compliance.models import (
    AuditEvent,
    CallHour,
    CallMinute,
    ChainHead,
    Checkpoint,
    LatencyMinute,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}  # no bulk delete


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "ts",
        "org_id",
        "seq",
        "type",
        "source",
        "server_slug",
        "tool",
        "decision",
        "result",
    )
    list_filter = ("type", "source", "decision")
    search_fields = ("tool", "server_slug")
    ordering = ("-ts",)
    show_full_result_count = False  # COUNT(*) over the whole log on every page is too costly


@admin.register(ChainHead)
class ChainHeadAdmin(ReadOnlyAdmin):
    list_display = ("org_id", "seq", "hash", "updated_at")


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("org_id", "seq", "hash", "created_at", "key_id")
    ordering = ("-created_at",)


# The dashboard's rollups (compliance/observe): kept by the audit writer, read-only here too.
@admin.register(CallMinute, CallHour)
class CallRollupAdmin(ReadOnlyAdmin):
    list_display = ("bucket", "org_id", "server_slug", "tool", "decision", "calls", "denials")
    list_filter = ("decision",)
    ordering = ("-bucket",)
    show_full_result_count = False


@admin.register(LatencyMinute)
class LatencyMinuteAdmin(ReadOnlyAdmin):
    list_display = ("bucket", "org_id")
    ordering = ("-bucket",)
    show_full_result_count = False
