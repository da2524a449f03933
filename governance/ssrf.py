"""SSRF guard for upstream MCP server URLs.

Upstreams are often on private networks (that is where internal tools live), so private and
loopback addresses are allowed; link-local addresses (cloud metadata services such as
169.254.169.254, fe80::/10), multicast, unspecified and reserved ones are refused, as are names
that resolve to them, unless the operator allows them explicitly.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

METADATA_HOSTS = {
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "metadata.azure.internal",
}


class UnsafeUpstream(ValueError):
    pass


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return False
    return (
        address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )


def check_upstream_url(url: str, *, allow_link_local: bool = False, resolve: bool = True) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeUpstream("The upstream URL must use http or https.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeUpstream("The upstream URL has no host.")
    if parts.username or parts.password:
        raise UnsafeUpstream("Put credentials in the server's credential field, not in the URL.")
    if allow_link_local:
        return
    if host in METADATA_HOSTS:
        raise UnsafeUpstream(f"The host {host} is a cloud metadata service.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if _refused(literal):
            raise UnsafeUpstream(f"The address {host} is link-local, multicast or reserved.")
        return
    if not resolve:
        return
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except OSError:
        return  # unresolvable is not an SSRF; the connection test reports it unreachable
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _refused(address):
            raise UnsafeUpstream(
                f"The host {host} resolves to {address}, a link-local or reserved address."
            )
