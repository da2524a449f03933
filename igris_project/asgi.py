"""One ASGI application; a small dispatcher picks the target before Django is involved.

    /proxy/<slug>/mcp, /proxy/<slug>   -> proxy.app (plain ASGI, no Django request cycle)
    /.well-known/oauth-protected-resource -> proxy.wellknown (RFC 9728 metadata)
    /healthz                           -> plain ASGI health report
    /api/v1/events (SSE), /ws/events   -> compliance.live (plain ASGI; replays from the audit
                                          store, so it lives above governance)
    everything else                    -> Django through Channels' router

Why: Django's request cycle costs about a millisecond of CPU per request on 2 cores; the proxy
is the hot path and must not pay it (DESIGN.md §2).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "igris_project.settings")

from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()

from django.conf import settings  # noqa: E402

from igris_project.dispatch import Dispatcher  # noqa: E402
from igris_project.forwarded import AllowedHosts, ForwardedHeaders, parse_trusted  # noqa: E402

# Outermost first: believe forwarding headers only from trusted proxies, then refuse hosts that
# are not ours, then route.
application = ForwardedHeaders(
    AllowedHosts(Dispatcher(django_asgi), settings.ALLOWED_HOSTS),
    parse_trusted(settings.IGRIS_TRUSTED_PROXIES),
)
