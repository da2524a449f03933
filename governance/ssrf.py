"""SSRF guard for upstream MCP servers: which addresses igris may connect to.

- Link-local addresses (cloud metadata services such as 169.254.169.254, fe80::/10), multicast,
  unspecified and reserved ones are refused, as are the metadata host names, unless the operator
  allows them (`IGRIS_UPSTREAM_ALLOW_LINK_LOCAL`).
- Loopback and private ranges (RFC 1918, RFC 4193 unique-local, RFC 6598 shared address space)
  are where a self-hosted install's internal tools live, so they are allowed by default; a shared,
  multi-tenant install narrows them with `IGRIS_UPSTREAM_ALLOWED_NETWORKS` (`none`, or the CIDRs
  its upstreams really use), since a tenant could otherwise reach the operator's own services.
- Public addresses are allowed.

The guard runs when a server is saved (a clear field error) and again whenever a connection is
made: the proxy's one upstream seam checks every address its resolver returns and connects only
to those (proxy.upstream), so a name that later resolves elsewhere (DNS rebinding) is refused at
connect time. Pure: no Django; `AddressPolicy.from_settings` reads the settings it is given.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

METADATA_HOSTS = {
    "metadata.google.internal",
    "metadata",
    "instance-data",
    "metadata.azure.internal",
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK = ("127.0.0.0/8", "::1/128")
PRIVATE = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT, some VPC meshes)
    "fc00::/7",  # RFC 4193 unique local
)
KEYWORDS = {"loopback": LOOPBACK, "private": LOOPBACK + PRIVATE, "none": ()}
DEFAULT_ALLOWED_NETWORKS = "private"


class UnsafeUpstream(ValueError):
    pass


def parse_networks(value: str) -> tuple[Network, ...]:
    """`IGRIS_UPSTREAM_ALLOWED_NETWORKS`: comma-separated CIDRs and the keywords `loopback`,
    `private` (loopback and the private ranges) and `none`. Raises ValueError naming a bad
    entry."""
    networks: list[Network] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        for cidr in KEYWORDS.get(entry, (entry,)):
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(
                    f"{raw.strip()!r} is not a CIDR network or one of loopback, private, none"
                ) from None
    return tuple(networks)


def _unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _internal(address: Address) -> bool:
    """Loopback or a private range: allowed only inside the allowed networks."""
    return address.is_loopback or any(
        address in network for network in _PRIVATE_NETWORKS if network.version == address.version
    )


_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(cidr) for cidr in LOOPBACK + PRIVATE)


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[Network, ...] = parse_networks(DEFAULT_ALLOWED_NETWORKS)
    allow_link_local: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> AddressPolicy:
        return cls(
            allowed_networks=parse_networks(
                getattr(settings, "IGRIS_UPSTREAM_ALLOWED_NETWORKS", DEFAULT_ALLOWED_NETWORKS)
            ),
            allow_link_local=bool(getattr(settings, "IGRIS_UPSTREAM_ALLOW_LINK_LOCAL", False)),
        )

    def refusal(self, address: Address) -> str | None:
        """Why igris may not connect to `address`, or None when it may."""
        address = _unmapped(address)
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_link_local:
            return None if self.allow_link_local else "a link-local address"
        if address.is_multicast or address.is_unspecified:
            return "a multicast or unspecified address"
        if _internal(address):
            return "a loopback or private address outside IGRIS_UPSTREAM_ALLOWED_NETWORKS"
        if address.is_reserved:
            return None if self.allow_link_local else "a reserved address"
        return None

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        """Raise UnsafeUpstream when any address `host` resolved to is refused."""
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            reason = self.refusal(address)
            if reason is not None:
                shown = "" if text == host else f"{host} resolves to "
                raise UnsafeUpstream(f"igris may not connect to {shown}{address}: it is {reason}.")


def check_upstream_url(
    url: str, *, policy: AddressPolicy | None = None, resolve: bool = True
) -> None:
    """The save-time check of an upstream URL (its form, and where its host resolves now)."""
    policy = policy or AddressPolicy()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeUpstream("The upstream URL must use http or https.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeUpstream("The upstream URL has no host.")
    if parts.username or parts.password:
        raise UnsafeUpstream("Put credentials in the server's credential field, not in the URL.")
    if host in METADATA_HOSTS and not policy.allow_link_local:
        raise UnsafeUpstream(f"The host {host} is a cloud metadata service.")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        policy.check_addresses(host, [host])
        return
    if not resolve:
        return
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except OSError:
        return  # unresolvable is not an SSRF; the connection test reports it unreachable
    policy.check_addresses(host, [str(info[4][0]) for info in infos])
