"""The console's pages (namespace "console"). POST-only routes change state; GET routes read."""

from __future__ import annotations

from django.urls import path

from governance import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    # organisations
    path("orgs/new/", views.org_create, name="org_create"),
    path("orgs/switch/", views.org_switch, name="org_switch"),
    path("settings/", views.org_settings, name="org_settings"),
    path("settings/delete/", views.org_delete, name="org_delete"),
    # members and invitations
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/leave/", views.member_leave, name="member_leave"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "members/invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    # API keys
    path("keys/", views.keys, name="keys"),
    path("keys/new/", views.key_create, name="key_create"),
    path("keys/<uuid:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    # MCP servers
    path("servers/", views.servers, name="servers"),
    path("servers/new/", views.server_create, name="server_create"),
    path("servers/<uuid:server_id>/edit/", views.server_edit, name="server_edit"),
    path("servers/<uuid:server_id>/delete/", views.server_delete, name="server_delete"),
]
