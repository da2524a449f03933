"""Turning an MCP server's stored upstream credential into the header igris sends it with.

One rule for every way out to a server (the proxy's forwarding, the API's connection test and
tool refresh): a bearer credential becomes `Authorization: Bearer <secret>`, a header credential
is sent under the header name the server was saved with, and no credential sends nothing. The
secret is decrypted with the server's id as associated data (governance.crypto), so a
ciphertext copied to another server does not decrypt.
"""

from __future__ import annotations

from governance import crypto
from governance.models import McpServer, UpstreamAuth


def upstream_auth_header(server: McpServer) -> tuple[str, str] | None:
    """(name, value) of the header carrying the server's credential, or None."""
    if server.auth_type == UpstreamAuth.NONE or not server.credential_encrypted:
        return None
    secret = crypto.decrypt(bytes(server.credential_encrypted), context=str(server.id))
    if server.auth_type == UpstreamAuth.BEARER:
        return ("Authorization", f"Bearer {secret}")
    return (server.auth_header_name, secret)
