"""Server time and weight of the console's audit log pages at volume, against the sessions page
(an existing console list) as the baseline in the same run.

Seeds one organisation with N proxy `tool_call` records (20 servers, 200 agents, 30 days) through
`append_events` (the writer's store path, COPY for large batches) with a signed checkpoint every
1,000 records (about an hour of traffic at 1M records a month, the scheduled cadence), then times
each page through Django's test client in this process: the view, the middleware and the
template, without a network hop. Median and p95 of `--repeat` requests after two warm-ups.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/igris_f_bench \\
    REDIS_URL=redis://127.0.0.1:6379/8 .venv/bin/python bench/audit_page.py [-n 200000]

Runs in the named scratch database, created and dropped (audit rows cannot be deleted). Writes
bench/results/audit_page.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "igris_project.settings")


def _seed(n: int) -> tuple[object, object, str]:
    from compliance.audit.writer import append_events
    from compliance.services import checkpoint_create
    from governance.models import Membership, Organization, User

    user = User.objects.create_user(email="bench@acme.test", password="x" * 20)
    org = Organization.objects.create(name="Bench", slug="bench")
    Membership.objects.create(org=org, user=user, role="owner")
    servers = [(str(uuid.uuid4()), f"server-{i}") for i in range(20)]
    keys = [str(uuid.uuid4()) for _ in range(200)]
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / n
    decisions = ["allow"] * 17 + ["deny", "alert", "rate_limited"]
    tools = ["read_file", "write_file", "list_directory", "search_docs", "delete_records"]
    batch = []
    for i in range(n):
        server_id, slug = servers[i % 20]
        batch.append(
            {
                "id": str(uuid.uuid4()),
                "org_id": str(org.id),
                "type": "tool_call",
                "source": "proxy",
                "ts": (start + step * i).isoformat(),
                "actor": {"kind": "api_key", "id": keys[i % 200], "label": f"agent {i % 200}"},
                "data": {
                    "server_id": server_id,
                    "server_slug": slug,
                    "session_id": f"igs_{i % 5000:05d}",
                    "key_id": keys[i % 200],
                    "method": "tools/call",
                    "tool": tools[i % 5],
                    "decision": decisions[i % 20],
                    "result": "ok",
                    "latency_ms": 3.0 + i % 17,
                    "upstream_ms": 2.0 + i % 13,
                    "arguments": {"path": f"/srv/data/{i % 977}/file-{i}.txt", "limit": i % 50},
                },
            }
        )
        if len(batch) == 1000:
            append_events(batch)
            checkpoint_create(org_id=org.id)
            batch = []
    if batch:
        append_events(batch)
    return org, user, "igs_00042"


def _time(client, url: str, repeat: int) -> dict[str, object]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):
        client.get(url)
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            began = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - began) * 1000)
    assert response.status_code == 200, (url, response.status_code)
    body = response.content
    times.sort()
    return {
        "url": url,
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "queries": len(queries),
        "html_bytes": len(body),
        "html_gzip_bytes": len(gzip.compress(body)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    import django
    from django.conf import settings
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    db_name = settings.DATABASES["default"]["NAME"]
    assert db_name.endswith("_bench"), "run in a scratch database whose name ends in _bench"
    with connection._nodb_cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
        cursor.execute(f'CREATE DATABASE "{db_name}"')
    try:
        call_command("migrate", verbosity=0)
        began = time.perf_counter()
        org, user, session_id = _seed(args.n)
        seed_s = time.perf_counter() - began
        from compliance.models import AuditEvent
        from governance.models import AgentSession

        AgentSession.objects.create(id=session_id, org=org, server_slug="server-2", era="modern")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE compliance_auditevent")
        client = Client()
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        newest = AuditEvent.objects.filter(org_id=org.id).order_by("-seq").values_list("seq")[0][0]
        week_ago = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S")
        pages = {
            "baseline: /sessions/": "/sessions/",
            "list: newest page": "/audit/",
            "list: deep cursor": f"/audit/?before={newest // 2}",
            "list: decision=deny": "/audit/?decision=deny",
            "list: until a week ago": f"/audit/?until={week_ago}",
            "list: session": f"/audit/?session={session_id}",
            "list: search in arguments": "/audit/?q=file-12345",
            "list: search with a rare tool": "/audit/?q=delete&decision=deny",
            "detail: middle record": f"/audit/{newest // 2}/",
            "detail: newest record": f"/audit/{newest}/",
        }
        results = {name: _time(client, url, args.repeat) for name, url in pages.items()}
        static = ROOT / "static"
        css = (static / "css" / "igris.css").read_bytes()
        js = (static / "js" / "igris.js").read_bytes()
        out = {
            "records": args.n,
            "seed_seconds": round(seed_s, 1),
            "repeat": args.repeat,
            "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
            "static": {
                "igris.css": [len(css), len(gzip.compress(css))],
                "igris.js": [len(js), len(gzip.compress(js))],
            },
            "pages": results,
        }
        path = ROOT / "bench" / "results" / "audit_page.json"
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps(out, indent=2))
    finally:
        connection.close()
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{db_name}"')


if __name__ == "__main__":
    main()
