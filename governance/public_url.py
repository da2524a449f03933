"""Where agents and people reach igris: the base of every URL igris hands out.

One rule for every agent-facing URL (console quick start, server list, key snippet, the proxy's
401 challenge, RFC 9728 metadata, invitation links): `IGRIS_PUBLIC_URL` when it is set, else the
address the request came to. That address is trustworthy: igris_project.forwarded refuses a
Host outside ALLOWED_HOSTS and believes X-Forwarded-Host only from IGRIS_TRUSTED_PROXIES.

`make run` and `make run-prod` set `IGRIS_PUBLIC_URL`, when the operator did not, to the address
they actually serve (`served_base_url`), so the banner, var/demo.json and every page agree on
the port. No port is written down anywhere else.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

# Binding these listens on every interface: no single address is "the" one agents should use,
# so the pages follow the request's host and the banner shows the loopback address.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def served_base_url(host: str, port: int) -> str:
    """The base URL of a server bound to host:port, as a client on this machine reaches it."""
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host.strip("[]")
    if ":" in shown:  # an IPv6 literal needs brackets in a URL (RFC 3986 §3.2.2)
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def default_public_url(host: str, port: int) -> str | None:
    """What IGRIS_PUBLIC_URL defaults to for a server bound to host:port; None for a wildcard
    bind, where each request's own host is the right answer."""
    return None if host in WILDCARD_HOSTS else served_base_url(host, port)


def public_base_url(request: Any) -> str:
    """IGRIS_PUBLIC_URL, else the scheme and host this request came to (no trailing slash)."""
    return (settings.IGRIS_PUBLIC_URL or request.build_absolute_uri("/")).rstrip("/")


def proxy_url(request: Any, slug: str) -> str:
    return f"{public_base_url(request)}/proxy/{slug}/mcp"
