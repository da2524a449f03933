"""Real sockets: the demo upstream (official SDK) and igris itself, each on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from igris_project.demo.upstream import build_demo_app
from tests.support import serving


@pytest.fixture
def upstream_url() -> Iterator[str]:
    with serving(build_demo_app()) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def igris_url(transactional_db, settings) -> Iterator[str]:
    """igris' full ASGI application (dispatcher, proxy, Django) on a real socket."""
    from governance import keys
    from igris_project.asgi import application

    keys.reset()
    with serving(application) as port:
        yield f"http://127.0.0.1:{port}"
    keys.reset()


@pytest.fixture
def demo_server(acme, alice, upstream_url):
    from governance.services.servers import server_create

    return server_create(
        org=acme, actor=alice, name="Demo tools", slug="demo", upstream_url=upstream_url
    )


@asynccontextmanager
async def mcp_client(url: str, token: str | None, *, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client
