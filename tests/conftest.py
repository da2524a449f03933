"""The cast and shared fixtures.

Organisation "acme" with alice (owner) and bob (developer); organisation "globex" with charlie
(owner). Charlie must never see acme's objects.
"""

from __future__ import annotations

import socket

import pytest

PASSWORD = "correct-horse-battery-staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _clean_cache():
    from django.conf import settings

    yield
    if not settings.configured:
        return
    from django.core.cache import cache

    from governance import keys

    keys.reset()  # cached keys and the addresses blocked for failed keys (BadKeyGuard)

    if settings.REDIS_URL:
        cache.delete_pattern("*")
        wipe_hot_state()  # flags, counters, the audit stream: each test starts empty
    else:
        cache.clear()


def wipe_hot_state() -> None:
    """Delete every Redis key of this run's hot state (what an empty Redis restart leaves)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{settings.IGRIS_HOTSTATE_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _user(email: str):
    from allauth.account.models import EmailAddress

    from governance.models import User

    user = User.objects.create_user(email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


@pytest.fixture
def alice(db):
    return _user("alice@acme.test")


@pytest.fixture
def bob(db):
    return _user("bob@acme.test")


@pytest.fixture
def charlie(db):
    return _user("charlie@globex.test")


@pytest.fixture
def acme(alice, bob):
    from governance.models import Membership
    from governance.services.organizations import organization_create

    org = organization_create(name="Acme", owner=alice, slug="acme")
    Membership.objects.create(org=org, user=bob, role="developer")
    return org


@pytest.fixture
def globex(charlie):
    from governance.services.organizations import organization_create

    return organization_create(name="Globex", owner=charlie, slug="globex")


@pytest.fixture
def acme_key(acme, alice):
    """An acme API key with every scope but admin: (ApiKey, plaintext)."""
    from governance.services.api_keys import api_key_create

    return api_key_create(
        org=acme, actor=alice, name="acme agents", scopes=["proxy", "read", "write", "ingest"]
    )


@pytest.fixture
def globex_key(globex, charlie):
    from governance.services.api_keys import api_key_create

    return api_key_create(
        org=globex, actor=charlie, name="globex agents", scopes=["proxy", "read", "write", "ingest"]
    )


def login(client, user) -> None:
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")


def _transactional(request) -> bool:
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return bool({"transactional_db", "live_server"} & set(request.fixturenames))


@pytest.fixture(autouse=True)
def _audit_tables_can_be_flushed(request):
    """Transactional tests end with Django's flush (TRUNCATE), which the audit table's
    append-only triggers refuse when rows exist: empty those tables first, triggers lifted.
    Requesting the database fixture here makes this teardown run before the flush."""
    if not _transactional(request):
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for table in ("compliance_auditevent", "compliance_checkpoint"):
            cursor.execute("SELECT to_regclass(%s)", [table])
            if cursor.fetchone()[0] is None:
                continue
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            cursor.execute(f"TRUNCATE {table}")
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
