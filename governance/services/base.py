"""Shared by every governance service: the user-facing error, the role check, model validation.

Services are keyword-only, atomic, check the actor's role through `governance.permissions` (here
`_check`), call `full_clean()` before saving (here `_clean`) and raise `ServiceError` (a clear,
user-facing message) on bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError

from governance.models import Organization
from governance.permissions import Action, Role, require
from governance.selectors.members import role_of

__all__ = ["ServiceError"]


class ServiceError(Exception):
    """Bad input or a broken invariant; the message is safe to show to the user."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


def _check(org: Organization, actor: Any, action: Action) -> str:
    role = role_of(org=org, user=actor)
    if (
        role is None
        and getattr(actor, "is_superuser", False)
        and getattr(actor, "is_active", False)
    ):
        # Platform operators (Django superusers, through the admin) act as owners of any
        # organisation; every such change is still audited under their own identity.
        return Role.OWNER
    require(role, action)
    assert role is not None
    return role


def _clean(obj: Any, exclude: Sequence[str] = ()) -> None:
    try:
        obj.full_clean(exclude=list(exclude))
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise ServiceError(f"{field}: {' '.join(messages)}", field=field) from exc
