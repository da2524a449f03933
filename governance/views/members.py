"""Members, roles, invitations (create, revoke, accept) and leaving an organisation."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from governance.forms import InvitationForm, MemberRoleForm, role_choices
from governance.middleware import SESSION_ORG_KEY
from governance.models import Invitation
from governance.permissions import ROLE_DESCRIPTIONS, Action, Role
from governance.public_url import public_base_url
from governance.selectors.members import (
    invitation_get_for_org,
    invitations_open_for_org,
    member_get_for_org,
    members_for_org,
)
from governance.services import members as member_services
from governance.services.base import ServiceError
from governance.services.members import invitation_by_token, invitation_create, member_change_role
from governance.views.base import Console, add_service_error, console_render, org_required


def _render_members(
    request: HttpRequest, console: Console, invite_form: InvitationForm | None = None
) -> HttpResponse:
    manage = console.can(Action.MEMBERS_MANAGE)
    is_owner = console.role == Role.OWNER
    if invite_form is None and manage:
        invite_form = InvitationForm(actor_role=console.role)
    rows = []
    for membership in members_for_org(org=console.org):
        is_self = membership.user_id == console.user.pk
        # Only an owner touches an owner (services enforce it; the page just does not offer it).
        can_edit = manage and (is_owner or membership.role != Role.OWNER)
        rows.append(
            {
                "member": membership,
                "is_self": is_self,
                "can_change_role": can_edit,
                "can_remove": can_edit and not is_self,
            }
        )
    return console_render(
        request,
        console,
        "console/members.html",
        {
            "rows": rows,
            "invitations": invitations_open_for_org(org=console.org) if manage else [],
            "invite_form": invite_form,
            "role_choices": role_choices(console.role),
            "role_descriptions": [(role.value, ROLE_DESCRIPTIONS[role]) for role in Role],
        },
    )


@org_required(Action.MEMBERS_VIEW)
def members(request: HttpRequest, console: Console) -> HttpResponse:
    return _render_members(request, console)


@require_POST
@org_required(Action.MEMBERS_MANAGE)
def member_invite(request: HttpRequest, console: Console) -> HttpResponse:
    form = InvitationForm(request.POST, actor_role=console.role)
    if form.is_valid():
        try:
            invitation, _token = invitation_create(
                org=console.org,
                actor=console.user,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                accept_url_base=public_base_url(request),
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            messages.success(
                request, f"Invited {invitation.email} as {invitation.role}. The link is on its way."
            )
            return redirect("console:members")
    return _render_members(request, console, invite_form=form)


@require_POST
@org_required(Action.MEMBERS_MANAGE)
def member_role(request: HttpRequest, console: Console, membership_id: int) -> HttpResponse:
    membership = member_get_for_org(org=console.org, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the listed roles.")
        return redirect("console:members")
    try:
        member_change_role(
            org=console.org,
            actor=console.user,
            membership=membership,
            role=form.cleaned_data["role"],
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{membership.user.email} is now {form.cleaned_data['role']}.")
    return redirect("console:members")


@require_POST
@org_required(Action.MEMBERS_MANAGE)
def member_remove(request: HttpRequest, console: Console, membership_id: int) -> HttpResponse:
    membership = member_get_for_org(org=console.org, membership_id=membership_id)
    if membership.user_id == console.user.pk:
        return member_leave(request)
    try:
        member_services.member_remove(org=console.org, actor=console.user, membership=membership)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Removed {membership.user.email} from {console.org.name}.")
    return redirect("console:members")


@require_POST
@org_required(Action.MEMBERS_VIEW)
def member_leave(request: HttpRequest, console: Console) -> HttpResponse:
    try:
        member_services.member_remove(
            org=console.org, actor=console.user, membership=console.membership
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("console:members")
    request.session.pop(SESSION_ORG_KEY, None)
    messages.success(request, f"You left {console.org.name}.")
    return redirect("console:home")


@require_POST
@org_required(Action.MEMBERS_MANAGE)
def invitation_revoke(request: HttpRequest, console: Console, invitation_id: str) -> HttpResponse:
    invitation = invitation_get_for_org(org=console.org, invitation_id=invitation_id)
    try:
        member_services.invitation_revoke(
            org=console.org, actor=console.user, invitation=invitation
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Revoked the invitation for {invitation.email}.")
    return redirect("console:members")


def _invitation_state(invitation: Invitation | None) -> str:
    if invitation is None:
        return "invalid"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.accepted_at is not None:
        return "used"
    if invitation.is_expired:
        return "expired"
    return "open"


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link from the invitation e-mail; works signed out too (it links to sign in/up)."""
    invitation = invitation_by_token(token=token)
    error = None
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            membership = member_services.invitation_accept(token=token, user=request.user)  # type: ignore[arg-type]
        except ServiceError as exc:
            error = exc.message
            if invitation is not None:
                invitation.refresh_from_db()
        else:
            request.session[SESSION_ORG_KEY] = str(membership.org_id)
            messages.success(
                request, f"Welcome to {membership.org.name}: you joined as {membership.role}."
            )
            return redirect("console:home")
    state = _invitation_state(invitation)
    email_matches = (
        invitation is not None
        and request.user.is_authenticated
        and request.user.email.lower() == invitation.email.lower()  # type: ignore[union-attr]
    )
    return render(
        request,
        "console/invitation_accept.html",
        {
            "invitation": invitation,
            "state": state,
            "error": error,
            "email_matches": email_matches,
            "next_path": request.get_full_path(),
        },
        status=404 if invitation is None else 200,
    )
