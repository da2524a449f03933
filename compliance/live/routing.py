"""The live feed's routes for Channels' `URLRouter` (igris_project/asgi.py mounts them).

Paths as Channels matches them: relative, without the leading slash; a trailing slash is
accepted too. Bare ASGI apps from `as_asgi()`: one consumer instance per connection.
"""

from __future__ import annotations

from django.urls import re_path

from compliance.live.consumers import EventSocketConsumer, EventStreamConsumer

http_urlpatterns = [re_path(r"^api/v1/events/?$", EventStreamConsumer.as_asgi())]
websocket_urlpatterns = [re_path(r"^ws/events/?$", EventSocketConsumer.as_asgi())]
