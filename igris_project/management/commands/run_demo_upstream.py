"""Serve the demo upstream MCP server (igris_project/demo/upstream.py) over Streamable HTTP."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from igris_project.demo.upstream import MCP_PATH, serve


class Command(BaseCommand):
    help = "Serve the demo upstream MCP server on http://HOST:PORT/mcp (in-memory, no database)."

    # The server keeps its state in memory; skipping the checks keeps the database out of it.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to bind.")
        parser.add_argument("--port", type=int, default=3199, help="Port to bind.")
        parser.add_argument(
            "--json-response",
            action="store_true",
            help="Answer single requests with application/json instead of SSE.",
        )
        parser.add_argument(
            "--drift",
            action="store_true",
            help="Serve a changed description for the echo tool (to test drift detection).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        self.stdout.write(f"Demo upstream MCP server on http://{host}:{port}{MCP_PATH}")
        serve(host, port, json_response=options["json_response"], drift=options["drift"])
