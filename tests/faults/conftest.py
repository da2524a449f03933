"""Fixtures shared with tests/proxy: the demo MCP upstream (official SDK) and acme's server row."""

from tests.proxy.conftest import demo_server, upstream_url  # noqa: F401
