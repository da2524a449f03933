"""/api/v1/docs/: a plain HTML reference of the API built from its OpenAPI schema.

Swagger UI and ReDoc load their JavaScript from a CDN unless drf-spectacular-sidecar is
installed; igris serves nothing from third-party hosts, so this page is rendered here, without
scripts. The machine-readable schema is at /api/v1/schema/.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.html import escape, format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")


def _ref_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array":
        return f"[{_ref_name(schema.get('items'))}]"
    return str(schema.get("type", "object"))


def _body(operation: dict[str, Any]) -> str:
    content: dict[str, Any] = (operation.get("requestBody") or {}).get("content") or {}
    first: dict[str, Any] = next(iter(content.values()), {})
    schema = first.get("schema")
    return _ref_name(schema)


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    params = format_html_join(
        ", ",
        "<code>{}</code> ({})",
        ((p["name"], p["in"]) for p in operation.get("parameters", [])),
    )
    responses = format_html_join(
        " ",
        '<span class="code">{}</span>',
        ((code,) for code in operation.get("responses", {})),
    )
    body = _body(operation)
    return format_html(
        "<tr><td><b>{}</b></td><td><code>{}</code></td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{}</td></tr>",
        method.upper(),
        path,
        operation.get("summary", ""),
        params,
        body,
        responses,
    )


def _component(name: str, schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    rows = format_html_join(
        "",
        "<li><code>{}</code>{}: {}</li>",
        (
            (field, "*" if field in required else "", _ref_name(spec) or spec.get("type", ""))
            for field, spec in props.items()
        ),
    )
    return format_html('<h3 id="{}">{}</h3><ul>{}</ul>', name, name, rows)


# A read-only page: another method is a 405 (a problem, governance/api/middleware.py), not a CSRF
# refusal of a request that could change nothing anyway.
@csrf_exempt
@require_safe
def api_docs(request: HttpRequest) -> HttpResponse:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    rows = "".join(
        _operation(path, method, item[method])
        for path, item in schema.get("paths", {}).items()
        for method in METHODS
        if method in item
    )
    components = "".join(
        _component(name, spec)
        for name, spec in schema.get("components", {}).get("schemas", {}).items()
    )
    info = schema.get("info", {})
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(info.get("title", "API"))}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: left; }}
code {{ background: #f4f4f4; padding: 0 .2rem; }}
.code {{ display: inline-block; margin-right: .2rem; color: #555; }}
</style></head><body>
<h1>{escape(info.get("title", "API"))} {escape(info.get("version", ""))}</h1>
<p>{escape(info.get("description", ""))}</p>
<p>OpenAPI 3 schema: <a href="/api/v1/schema/">/api/v1/schema/</a> (YAML;
<a href="/api/v1/schema/?format=json">JSON</a>). Authenticate with
<code>Authorization: Bearer ig_…</code>. Errors are <code>application/problem+json</code>.</p>
<h2>Operations</h2>
<table><tr><th>Method</th><th>Path</th><th>What</th><th>Parameters</th><th>Body</th>
<th>Responses</th></tr>{rows}</table>
<h2>Schemas</h2>{components}
</body></html>"""
    response = HttpResponse(page)
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
