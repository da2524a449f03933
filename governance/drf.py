"""REST API authentication and tenant scoping.

`Authorization: Bearer ig_…` authenticates as the key's organisation with the key's scopes; the
role is the role of the member who created the key (a key never exceeds its creator). The
console session cookie works too (with CSRF), scoped to the user's current organisation.
Repeated key failures from one address get 429 (governance.keys.BadKeyGuard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from governance.keys import (
    KeyAttemptsBlocked,
    KeyError_,
    VerifiedKey,
    client_address,
    touch_last_used,
    verify_bearer_sync,
)
from governance.models import Membership, Organization


@dataclass
class ApiPrincipal:
    """`request.auth` for API calls: which org, which role, which scopes."""

    org: Organization
    role: str | None
    scopes: frozenset[str]
    key: VerifiedKey | None = None
    user: Any = None

    def has_scope(self, scope: str) -> bool:
        return self.key is None or scope in self.scopes


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiPrincipal] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        try:
            key, verified = verify_bearer_sync(header, request_address(request))
        except KeyAttemptsBlocked as exc:
            raise _throttled(exc.wait_s) from None
        except KeyError_ as exc:
            detail = {"code": exc.reason, "detail": exc.message}
            raise exceptions.AuthenticationFailed(detail) from None
        creator = key.created_by
        role = None
        if creator is not None:
            role = (
                Membership.objects.filter(org_id=key.org_id, user=creator)
                .values_list("role", flat=True)
                .first()
            )
        touch_last_used(verified.id)
        return creator, ApiPrincipal(
            org=key.org, role=role, scopes=verified.scopes, key=verified, user=creator
        )

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="igris"'


def request_address(request: Any) -> str:
    """The caller's address (see governance.keys.client_address) of a Django or DRF request."""
    return client_address(request.META.get("REMOTE_ADDR"))


class KeyAttemptsThrottled(exceptions.Throttled):
    """429 for an address over its budget of failed key attempts (not the per-key budget)."""

    summary = "Too many failed API key attempts from this address"


def _throttled(wait_s: float) -> KeyAttemptsThrottled:
    return KeyAttemptsThrottled(wait=wait_s)


class ConsoleSessionAuthentication(authentication.SessionAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiPrincipal] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        from governance.middleware import current_membership

        membership = current_membership(request._request)
        if membership is None:
            raise exceptions.PermissionDenied(
                {"code": "no_organization", "detail": "Create or join an organisation first."}
            )
        return user, ApiPrincipal(
            org=membership.org, role=membership.role, scopes=frozenset(), user=user
        )
