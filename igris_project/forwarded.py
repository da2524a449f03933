"""X-Forwarded-* are believed only from the proxies the operator names (IGRIS_TRUSTED_PROXIES).

This ASGI middleware wraps the whole application, so every part (proxy, live feed, Django,
allauth's rate limits, the failed-key throttle, audit records) sees one answer to "who is calling":

- from a trusted proxy: `scope["client"]` becomes the first address in X-Forwarded-For that is
  not itself a trusted proxy, walking from the right (entries left of it were written by the
  client and prove nothing), and `scope["scheme"]` follows X-Forwarded-Proto;
- from anyone else: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Forwarded are
  removed from the request, so nothing downstream (Django's SECURE_PROXY_SSL_HEADER and
  USE_X_FORWARDED_HOST included) can be fooled by a client that writes them itself.

uvicorn's own proxy-header handling is switched off (`--no-proxy-headers`) so the peer address
reaching this middleware is the socket's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDING_HEADERS = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}


class TrustedProxyError(ValueError):
    pass


def parse_trusted(value: str) -> list[Network] | None:
    """`IGRIS_TRUSTED_PROXIES`: comma-separated addresses or CIDR blocks; `*` trusts any peer
    (only where igris cannot be reached but through the proxy). None means any peer."""
    networks: list[Network] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item == "*":
            return None
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise TrustedProxyError(
                f"IGRIS_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR block"
            ) from None
    return networks


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class ForwardedHeaders:
    def __init__(self, app: Any, trusted: Iterable[Network] | None) -> None:
        self.app = app
        self.any_peer = trusted is None
        self.trusted = list(trusted or [])
        self.enabled = self.any_peer or bool(self.trusted)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        if address is None:
            return False
        return self.any_peer or any(address in network for network in self.trusted)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = self.rewrite(scope)
        await self.app(scope, receive, send)

    def rewrite(self, scope: dict[str, Any]) -> dict[str, Any]:
        headers = scope.get("headers") or []
        if not any(name in FORWARDING_HEADERS for name, _ in headers):
            return scope
        peer = scope.get("client")
        if not self.enabled or not self._is_trusted(_ip(peer[0]) if peer else None):
            kept = [(n, v) for n, v in headers if n not in FORWARDING_HEADERS]
            return {**scope, "headers": kept}
        scope = dict(scope)
        forwarded_for = b",".join(v for n, v in headers if n == b"x-forwarded-for")
        hops = [h for h in forwarded_for.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            address = _ip(hop)
            if address is None:
                break  # garbage from the client: stop at the last hop we could believe
            scope["client"] = (str(address), 0)
            if not self._is_trusted(address):
                break
        proto = next((v for n, v in headers if n == b"x-forwarded-proto"), b"")
        proto_text = proto.decode("latin-1").split(",")[-1].strip().lower()
        if proto_text in {"http", "https"}:
            secure = proto_text == "https"
            if scope["type"] == "websocket":
                scope["scheme"] = "wss" if secure else "ws"
            else:
                scope["scheme"] = proto_text
        return scope


class AllowedHosts:
    """Every request names a host in ALLOWED_HOSTS, not only those Django serves.

    The proxy, its RFC 9728 metadata and the live feed are plain ASGI and build absolute URLs
    from the Host header when IGRIS_PUBLIC_URL is unset; without this check a forged Host would
    be written into a 401's WWW-Authenticate and into a publicly cacheable metadata document.
    Runs after ForwardedHeaders, so a believed X-Forwarded-Host is what is checked (and becomes
    the Host the plain ASGI parts see).
    """

    def __init__(self, app: Any, allowed_hosts: list[str]) -> None:
        # Imported here, not per request: this module is also imported by the settings, before
        # Django is configured.
        from django.http.request import split_domain_port, validate_host

        self.app = app
        self.allowed_hosts = allowed_hosts
        self._split = split_domain_port
        self._valid = validate_host

    # Platform health checks address the machine (its private IP), not the public name; the
    # health report builds no URL, so it answers whatever the Host.
    EXEMPT_PATHS = frozenset({"/healthz"})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        forwarded = next((v for n, v in headers if n == b"x-forwarded-host"), None)
        host = forwarded.split(b",")[-1].strip() if forwarded else None
        if host is None:
            host = next((v for n, v in headers if n == b"host"), None)
        if host is None:  # HTTP/1.0 without Host: nothing to reflect
            await self.app(scope, receive, send)
            return
        domain, _port = self._split(host.decode("latin-1"))
        if domain and self._valid(domain, self.allowed_hosts):
            if forwarded:
                kept = [(n, v) for n, v in headers if n != b"host"]
                scope = {**scope, "headers": [*kept, (b"host", host)]}
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = (
            b'{"error":"bad_host","message":"The Host header names a host this igris does not '
            b'serve (ALLOWED_HOSTS)."}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
