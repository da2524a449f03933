from __future__ import annotations

import pytest

from governance.models import McpServer
from governance.services import ServiceError, server_create
from governance.ssrf import UnsafeUpstream, check_upstream_url


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
    check_upstream_url("http://169.254.169.254/", allow_link_local=True)


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
