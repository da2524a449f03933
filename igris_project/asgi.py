"""One ASGI application; a small dispatcher takes the hot paths before Channels or Django.

    /proxy/<slug>/mcp, /proxy/<slug>   -> proxy.app (plain ASGI, no Django request cycle)
    /.well-known/oauth-protected-resource -> proxy.wellknown (RFC 9728 metadata)
    /healthz                           -> plain ASGI health report
    everything else                    -> Channels' router:
      /api/v1/events (SSE), /ws/events -> compliance.live consumers (replay from the audit store,
                                          so they live above governance)
      the rest of http                 -> Django

Why: Django's request cycle costs about a millisecond of CPU per request on 2 cores; the proxy
is the hot path and must not pay it, nor a router's pattern loop (DESIGN.md §2).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "igris_project.settings")

from django.core.asgi import get_asgi_application

# Django is set up first: the consumers' modules import models.
django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from compliance.live.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402
from igris_project.dispatch import Dispatcher  # noqa: E402
from igris_project.forwarded import AllowedHosts, ForwardedHeaders, parse_trusted  # noqa: E402

router = ProtocolTypeRouter(
    {
        # Channels' documented catch-all: whatever no consumer takes goes to Django.
        "http": URLRouter([*http_urlpatterns, re_path(r"", django_asgi)]),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

# Outermost first: believe forwarding headers only from trusted proxies, then refuse hosts that
# are not ours, then route.
application = ForwardedHeaders(
    AllowedHosts(Dispatcher(router), settings.ALLOWED_HOSTS),
    parse_trusted(settings.IGRIS_TRUSTED_PROXIES),
)
