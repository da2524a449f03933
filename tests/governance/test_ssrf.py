from __future__ import annotations

import pytest

from governance.models import McpServer
from governance.services.base import ServiceError
from governance.services.servers import server_create
from governance.ssrf import AddressPolicy, UnsafeUpstream, check_upstream_url, parse_networks


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/mcp",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://0.0.0.0:80/mcp",
        "http://224.0.0.1/mcp",
        "http://[::ffff:169.254.169.254]/mcp",
        "ftp://example.com/mcp",
        "file:///etc/passwd",
        "http://user:secret@example.com/mcp",
    ],
)
def test_unsafe_upstream_urls_are_refused(url):
    with pytest.raises(UnsafeUpstream):
        check_upstream_url(url, resolve=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3199/mcp",
        "http://10.0.0.5/mcp",
        "https://mcp.example.com/mcp",
        "http://[::1]:8/mcp",
    ],
)
def test_loopback_private_and_public_upstreams_are_allowed(url):
    check_upstream_url(url, resolve=False)


def test_localhost_resolving_to_loopback_is_allowed():
    check_upstream_url("http://localhost:3199/mcp")


def test_an_operator_may_allow_link_local(settings):
    check_upstream_url("http://169.254.169.254/", policy=AddressPolicy(allow_link_local=True))


SHARED = AddressPolicy(allowed_networks=parse_networks("none"))
ONE_SUBNET = AddressPolicy(allowed_networks=parse_networks("10.20.0.0/16, 127.0.0.1/32"))


@pytest.mark.parametrize(
    ("policy", "address", "allowed"),
    [
        (AddressPolicy(), "127.0.0.1", True),
        (AddressPolicy(), "10.1.2.3", True),
        (AddressPolicy(), "192.168.1.1", True),
        (AddressPolicy(), "fd00::1", True),
        (AddressPolicy(), "100.64.0.1", True),
        (AddressPolicy(), "8.8.8.8", True),
        (AddressPolicy(), "169.254.169.254", False),
        (AddressPolicy(), "::ffff:169.254.169.254", False),
        (SHARED, "127.0.0.1", False),
        (SHARED, "::1", False),
        (SHARED, "10.1.2.3", False),
        (SHARED, "172.20.0.1", False),
        (SHARED, "::ffff:10.0.0.1", False),
        (SHARED, "8.8.8.8", True),
        (SHARED, "2606:4700::1111", True),
        (SHARED, "169.254.169.254", False),
        (ONE_SUBNET, "10.20.9.9", True),
        (ONE_SUBNET, "10.21.0.1", False),
        (ONE_SUBNET, "127.0.0.1", True),
        (ONE_SUBNET, "127.0.0.2", False),
    ],
)
def test_the_address_policy_allows_exactly_the_configured_networks(policy, address, allowed):
    import ipaddress

    assert (policy.refusal(ipaddress.ip_address(address)) is None) is allowed


@pytest.mark.parametrize("value", ["10.0.0.0/33", "private,intranet", "fe80::/200"])
def test_a_bad_allowed_networks_value_is_refused_naming_the_entry(value):
    with pytest.raises(ValueError, match="is not a CIDR network"):
        parse_networks(value)


def test_a_shared_install_refuses_loopback_and_private_upstreams_on_save(acme, alice, settings):
    settings.IGRIS_UPSTREAM_ALLOWED_NETWORKS = "none"
    for url in ("http://127.0.0.1:3199/mcp", "http://10.0.0.5/mcp", "http://localhost:3199/mcp"):
        with pytest.raises(ServiceError) as exc:
            server_create(org=acme, actor=alice, name="Internal", slug="internal", upstream_url=url)
        assert exc.value.code == "unsafe_upstream"
        assert "outside IGRIS_UPSTREAM_ALLOWED_NETWORKS" in str(exc.value)
    assert not McpServer.objects.filter(slug="internal").exists()


def test_creating_a_server_on_the_metadata_address_is_a_field_error(acme, alice, settings):
    with pytest.raises(ServiceError) as exc:
        server_create(
            org=acme,
            actor=alice,
            name="Meta",
            slug="meta",
            upstream_url="http://169.254.169.254/mcp",
        )
    assert exc.value.field == "upstream_url" and exc.value.code == "unsafe_upstream"
    assert not McpServer.objects.filter(slug="meta").exists()
    settings.IGRIS_UPSTREAM_ALLOW_LINK_LOCAL = True
    server_create(
        org=acme, actor=alice, name="Meta", slug="meta", upstream_url="http://169.254.169.254/mcp"
    )
