from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def console(request: HttpRequest) -> dict[str, Any]:
    getter = getattr(request, "membership_lazy", None)
    membership = getter() if getter else None
    return {
        "current_membership": membership,
        "current_org": membership.org if membership else None,
        "igris_env": settings.IGRIS_ENV,
        "oauth_github": "github" in settings.SOCIALACCOUNT_PROVIDERS,
        "oauth_google": "google" in settings.SOCIALACCOUNT_PROVIDERS,
    }
