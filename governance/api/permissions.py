"""The role table (`governance.permissions`) and API key scopes as one DRF permission.

Each view maps its HTTP methods to an `Access`: the role action (checked with `role_can`), the key
scope (by default `read` for GET/HEAD and `write` for the rest) and whether a key also needs the
`admin` scope (member and key management). Console sessions carry no scopes, so only the role
applies to them. Which organisation an object belongs to is not decided here: views fetch
objects through tenant-scoped selectors, so another organisation's object is a 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from governance.drf import ApiPrincipal
from governance.models import Scope
from governance.permissions import Action, role_can


@dataclass(frozen=True)
class Access:
    action: Action
    scope: str | None = None  # None: read for safe methods, write otherwise
    admin: bool = False  # an API key also needs the admin scope

    def scope_for(self, method: str) -> str:
        if self.scope is not None:
            return self.scope
        return Scope.READ if method in SAFE_METHODS else Scope.WRITE


def access_for(view: Any, method: str) -> Access | None:
    rules: dict[str, Access | Action] = getattr(view, "access", {})
    rule = rules.get("GET" if method == "HEAD" else method)
    if isinstance(rule, Action):
        return Access(rule)
    return rule


def _denied(text: str, **extra: str) -> PermissionDenied:
    return PermissionDenied({"code": "permission_denied", "detail": text, **extra})


class RoleAndScope(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, ApiPrincipal):
            raise NotAuthenticated()
        access = access_for(view, request.method or "GET")
        if access is None:
            return True  # the method is not served: the view answers 405
        scope = access.scope_for(request.method or "GET")
        if not principal.has_scope(scope):
            raise _denied(
                f"This API key lacks the '{scope}' scope.", reason="scope", required_scope=scope
            )
        if access.admin and principal.key is not None and not principal.has_scope(Scope.ADMIN):
            raise _denied(
                "Managing members and API keys with an API key needs its 'admin' scope.",
                reason="scope",
                required_scope=Scope.ADMIN,
            )
        if not role_can(principal.role, access.action):
            raise _denied(
                f"Your role ({principal.role or 'none'}) may not {access.action.value}.",
                reason="role",
                required_action=access.action.value,
            )
        return True
