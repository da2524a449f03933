"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for the proxy, at the root and per path.

MCP 2025-06-18 makes an MCP server an OAuth resource server; clients find this document from the
`resource_metadata` parameter of a 401's WWW-Authenticate header, or at the root well-known path
(some clients only probe the root). igris authenticates agents with API keys sent as bearer tokens.
"""

from __future__ import annotations

import json

from proxy.auth import public_base
from proxy.http import Receive, Scope, Send, header_map, send_bytes

PREFIX = "/.well-known/oauth-protected-resource"


async def protected_resource_metadata(scope: Scope, receive: Receive, send: Send) -> None:
    headers = header_map(scope)
    base = public_base(scope, headers)
    rest = scope["path"][len(PREFIX) :]
    resource = f"{base}{rest}" if rest.startswith("/proxy/") else f"{base}/proxy"
    if scope["method"] not in {"GET", "HEAD"}:
        await send_bytes(
            send, 405, b'{"error":"method_not_allowed"}', headers=[(b"allow", b"GET, HEAD")]
        )
        return
    document = {
        "resource": resource,
        "resource_name": "igris MCP governance proxy",
        "bearer_methods_supported": ["header"],
        "authorization_servers": [],
        "scopes_supported": ["proxy"],
        "resource_documentation": f"{base}/",
    }
    await send_bytes(
        send,
        200,
        json.dumps(document).encode(),
        headers=[
            (b"cache-control", b"public, max-age=3600"),
            (b"access-control-allow-origin", b"*"),
        ],
    )
