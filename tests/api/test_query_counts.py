"""Every list endpoint costs a fixed number of queries, however many rows it returns.

The pinned counts include authenticating the API key: 6 queries (the key, its allowed servers,
its creator's role, the creator, the role again in ApiKeyAuthentication, the last-used update),
then one query per list, plus one prefetch for API keys' allowed servers.
"""

from __future__ import annotations

import itertools

import pytest

from tests.api.conftest import make_key, member, tool_call

pytestmark = pytest.mark.django_db

_n = itertools.count()


def grow(kind: str, acme, alice, world, n: int) -> None:
    """Add n more rows to one list of acme."""
    from compliance.audit.writer import append_events
    from governance.models import AgentSession, Anomaly
    from governance.services.ingest_sources import ingest_source_create
    from governance.services.members import invitation_create
    from governance.services.policies import policy_publish
    from governance.services.servers import server_create
    from governance.services.tools import tools_observe

    for _ in range(n):
        i = next(_n)
        if kind == "members":
            member(acme, f"m{i}@acme.test", "auditor")
        elif kind == "invitations":
            invitation_create(org=acme, actor=alice, email=f"i{i}@acme.test", role="auditor")
        elif kind == "api-keys":
            make_key(acme, alice, ["read"], name=f"k{i}", allowed_server_ids=[world.server.id])
        elif kind == "servers":
            server_create(
                org=acme, actor=alice, name=f"S{i}", slug=f"srv-{i}", upstream_url="http://x.test/"
            )
        elif kind == "tools":
            tools_observe(org_id=acme.id, server_id=world.server.id, tools=[{"name": f"tool_{i}"}])
        elif kind == "policies/versions":
            policy_publish(org=acme, actor=alice, note=f"v{i}")
        elif kind == "sessions":
            AgentSession.objects.create(
                id=f"s-{i}",
                org=acme,
                server=world.server,
                server_slug="files",
                era="modern",
                key=world.key,
                user=alice,
            )
        elif kind == "anomalies":
            Anomaly.objects.create(org=acme, kind="rate_spike", resolved_by=alice)
        elif kind == "ingest-sources":
            ingest_source_create(org=acme, actor=alice, name=f"src{i}", provider="generic")
        elif kind == "audit-events":
            append_events([tool_call(acme, session_id=f"s-{i}")])


PINNED = {
    "members": 7,
    "invitations": 7,
    "api-keys": 8,
    "ingest-sources": 7,
    "servers": 7,
    "tools": 7,
    "policies/versions": 7,
    "sessions": 7,
    "anomalies": 7,
    "audit-events": 7,
}


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_a_list_costs_the_same_queries_for_few_or_many_rows(
    api, acme, alice, world, kind, django_assert_num_queries
):
    grow(kind, acme, alice, world, 2)
    with django_assert_num_queries(PINNED[kind]):
        few = api.get(f"{kind}/")
    grow(kind, acme, alice, world, 8)
    with django_assert_num_queries(PINNED[kind]):
        many = api.get(f"{kind}/")
    assert few.status_code == many.status_code == 200
    assert len(many.json()["results"]) >= len(few.json()["results"]) + 8
