"""The tool playground: call a server's tools through the proxy from the browser, as the signed-in
member. The page only sets the stage; static/js/playground.js speaks MCP (2026-07-28 era) to
/proxy/<slug>/mcp with the console session cookie, so calls meet the same policy, rate limits,
kill switches and audit log as an agent's."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from governance.middleware import SESSION_ORG_KEY
from governance.permissions import Action
from governance.selectors.servers import servers_for_org
from governance.views.base import Console, console_render, org_required

# The modern, sessionless era (MCP 2026-07-28): every request carries its protocol version and
# client info in params._meta and mirrors method and name in headers, so the browser needs no
# initialize handshake.
PROTOCOL_VERSION = "2026-07-28"
CLIENT_NAME = "igris-playground"


@org_required(Action.PLAYGROUND_USE)
def playground(request: HttpRequest, console: Console) -> HttpResponse:
    # The proxy resolves the organisation of a cookie-authenticated call from this session key.
    if request.session.get(SESSION_ORG_KEY) != str(console.org.id):
        request.session[SESSION_ORG_KEY] = str(console.org.id)
    servers = list(servers_for_org(org=console.org))
    wanted = request.GET.get("server", "")
    enabled = [server for server in servers if server.enabled]
    chosen = next((s for s in enabled if s.slug == wanted), enabled[0] if enabled else None)
    return console_render(
        request,
        console,
        "console/playground/index.html",
        {
            "servers": servers,
            "chosen": chosen,
            "protocol_version": PROTOCOL_VERSION,
            "client_name": CLIENT_NAME,
        },
    )
