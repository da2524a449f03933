"""What the request path of the proxy works with: its clients, caches and recorders.

`ProxyApp` builds one `ProxyDeps` per event loop and hands it to the answer paths (outcomes,
forwarding, streaming, standalone) instead of itself, so none of them imports the app and the
proxy's modules form no import cycle. The background components get narrower dependencies still
(`Breakers`, `Detector` and `UsageMeter` take a recorder and a hot-state accessor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.anomalies import Detector
from proxy.audit import AuditRecorder
from proxy.breaker import Breakers
from proxy.catalog import Catalog
from proxy.runtime import Runtime
from proxy.sessions import SessionRecorder
from proxy.upstream import Upstream


@dataclass
class ProxyDeps:
    upstream: Upstream  # the one outbound seam to MCP servers
    runtime: Runtime  # servers, organisations, policy snapshots, the local kill view
    sessions: SessionRecorder
    breakers: Breakers
    detector: Detector
    recorder: AuditRecorder
    hotstate_of: Callable[[], Any]  # this loop's hot state
    max_body: int  # IGRIS_PROXY_MAX_BODY_BYTES
    max_response: int  # IGRIS_PROXY_MAX_RESPONSE_BYTES
    keepalive_s: float  # IGRIS_SSE_KEEPALIVE_S

    @property
    def hotstate(self) -> Any:
        return self.hotstate_of()

    @property
    def catalog(self) -> Catalog:
        return self.runtime.catalog
