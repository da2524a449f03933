"""Resolve the console's current organisation from the session (users switch between orgs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from governance.models import Membership

SESSION_ORG_KEY = "igris_org_id"


def current_membership(request: HttpRequest) -> Membership | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user=user).select_related("org")
    wanted = request.session.get(SESSION_ORG_KEY)
    membership = None
    if wanted:
        membership = memberships.filter(org_id=wanted).first()
    if membership is None:
        membership = memberships.order_by("created_at").first()
        if membership is not None:
            request.session[SESSION_ORG_KEY] = str(membership.org_id)
    return membership


class CurrentOrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Lazy: pages that never look at the organisation pay no query.
        cache: dict[str, Membership | None] = {}

        def membership() -> Membership | None:
            if "m" not in cache:
                cache["m"] = current_membership(request)
            return cache["m"]

        request.membership_lazy = membership  # type: ignore[attr-defined]
        return self.get_response(request)
