"""/observe/: the dashboard page, its window parameter, its query count, and tenancy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from compliance.audit.writer import append_events
from governance.models import Anomaly
from tests.compliance.test_observe_rollups import call
from tests.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_calls(acme):
    now = timezone.now()
    append_events(
        [call(acme.id, ts=now, server_slug="acme-secret-files") for _ in range(3)]
        + [call(acme.id, ts=now, decision="deny", rule_id="acme-only-rule", result="denied")]
    )
    Anomaly.objects.create(org=acme, kind="rate_spike", server_slug="acme-secret-files")


@pytest.mark.parametrize("window", ["15m", "1h", "24h", "7d"])
def test_the_dashboard_shows_the_window_s_counters(client, alice, acme_calls, window):
    login(client, alice)
    response = client.get(reverse("observe:dashboard"), {"window": window})
    assert response.status_code == 200
    board = response.context["board"]
    assert board.counters["calls"] == 4
    assert board.counters["denials"] == 1
    assert board.counters["anomalies"] == 1
    body = response.content.decode()
    assert 'data-testid="count-calls">4<' in body
    assert 'aria-label="Risk heat map: servers by time"' in body
    assert "acme-only-rule" in body
    assert "/audit/?server_slug=acme-secret-files" in body


@pytest.mark.parametrize(
    "query",
    [{"window": "2w"}, {"window": ""}, {"rows": "tools"}, {"cols": "servers"}],
)
def test_a_bad_parameter_is_refused_with_a_clear_error(client, alice, acme, query):
    login(client, alice)
    response = client.get(reverse("observe:dashboard"), query)
    assert response.status_code == 400
    body = response.content.decode()
    assert 'data-testid="observe-error"' in body
    assert "must be" in body


@pytest.mark.parametrize(
    ("rows", "cols"), [("servers", "time"), ("agents", "time"), ("servers", "tools")]
)
def test_the_dashboard_makes_a_fixed_number_of_queries(
    client, alice, acme_calls, django_assert_num_queries, rows, cols
):
    login(client, alice)
    url = reverse("observe:dashboard")
    client.get(url)  # the session's first read of the membership is not the page's
    # session, user, membership, the switcher's organisations; series, combinations, anomalies,
    # key names, the heat map's time columns (time only), latency, the feed's last calls
    with django_assert_num_queries(11 if cols == "time" else 10):
        response = client.get(url, {"rows": rows, "cols": cols})
    assert response.status_code == 200


def test_the_feed_lists_the_last_calls_in_chain_order_so_the_live_feed_resumes_after_the_first(
    client, alice, acme
):
    now = timezone.now()
    # The second call is stored later (higher seq) with an older time, as an ingested one can be.
    append_events([call(acme.id, ts=now, tool="stored_first")])
    append_events([call(acme.id, ts=now - timedelta(minutes=5), tool="stored_second")])
    login(client, alice)
    response = client.get(reverse("observe:dashboard"))
    feed = response.context["feed"]
    assert [row["tool"] for row in feed] == ["stored_second", "stored_first"]
    assert feed[0]["seq"] == max(row["seq"] for row in feed)
    body = response.content.decode()
    assert body.index('data-seq="2"') < body.index('data-seq="1"')


def test_charlie_of_globex_sees_nothing_of_acme_s_numbers(client, charlie, globex, acme_calls):
    login(client, charlie)
    response = client.get(reverse("observe:dashboard"), {"window": "24h"})
    assert response.status_code == 200
    assert response.context["board"].counters["calls"] == 0
    body = response.content.decode()
    for marker in ("acme-secret-files", "acme-only-rule", "acme agents"):
        assert marker not in body


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get(reverse("observe:dashboard"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
