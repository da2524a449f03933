from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from governance import crypto
from governance.keys import AsyncKeyVerifier, KeyError_, verify_key_sync
from governance.models import ApiKey, PendingEvent
from governance.permissions import PermissionDenied
from governance.services.api_keys import api_key_create, api_key_revoke
from governance.services.base import ServiceError
from governance.services.servers import server_create


def test_a_new_key_has_the_documented_format_and_only_its_hash_is_stored(acme, alice):
    key, plaintext = api_key_create(org=acme, actor=alice, name="ci", scopes=["read"])
    assert plaintext.startswith("ig_")
    assert len(plaintext) - 3 >= 32
    assert all(c.isalnum() or c in "-_" for c in plaintext[3:])
    stored = ApiKey.objects.get(pk=key.pk)
    assert plaintext not in (stored.secret_hash, stored.salt, stored.prefix)
    assert plaintext[3:11] == stored.prefix
    assert stored.secret_hash == crypto.hash_secret(stored.salt, plaintext[11:])
    assert stored.created_by == alice and stored.scopes == ["read"]


def test_it_verifies_the_right_secret(acme_key):
    key, plaintext = acme_key
    model, verified = verify_key_sync(plaintext)
    assert model.pk == key.pk
    assert verified.org_slug == "acme"
    assert verified.scopes == {"proxy", "read", "write", "ingest"}


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "invalid"),
        (lambda t: "ig_" + "Z" * 8 + t[11:], "invalid"),
        (lambda t: t.replace("ig_", "xx_", 1), "malformed"),
        (lambda t: "ig_short", "malformed"),
        (lambda t: "", "missing"),
    ],
)
def test_a_wrong_or_malformed_secret_is_refused_with_a_reason(acme_key, mutate, reason):
    _, plaintext = acme_key
    with pytest.raises(KeyError_) as exc:
        verify_key_sync(mutate(plaintext))
    assert exc.value.reason == reason


def test_an_expired_key_is_refused(acme, alice):
    key, plaintext = api_key_create(
        org=acme,
        actor=alice,
        name="soon",
        scopes=["proxy"],
        expires_at=timezone.now() + timedelta(hours=1),
    )
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(KeyError_) as exc:
        verify_key_sync(plaintext)
    assert exc.value.reason == "expired"


def test_a_revoked_key_is_refused_and_the_revocation_is_recorded(acme, alice, acme_key):
    key, plaintext = acme_key
    api_key_revoke(org=acme, actor=alice, key=key)
    with pytest.raises(KeyError_) as exc:
        verify_key_sync(plaintext)
    assert exc.value.reason == "revoked"
    types = [e.payload["type"] for e in PendingEvent.objects.filter(org_id=acme.id)]
    assert types.count("api_key.revoked") == 1
    with pytest.raises(ServiceError, match="already revoked"):
        api_key_revoke(org=acme, actor=alice, key=key)


@pytest.mark.parametrize(
    ("scopes", "message"),
    [([], "at least one scope"), (["read", "root"], "Unknown scope")],
)
def test_scopes_are_validated_and_nothing_is_written(acme, alice, scopes, message):
    with pytest.raises(ServiceError, match=message):
        api_key_create(org=acme, actor=alice, name="bad", scopes=scopes)
    assert ApiKey.objects.filter(org=acme).count() == 0


def test_an_expiry_in_the_past_is_refused(acme, alice):
    with pytest.raises(ServiceError, match="future"):
        api_key_create(
            org=acme,
            actor=alice,
            name="old",
            scopes=["read"],
            expires_at=timezone.now() - timedelta(days=1),
        )


def test_a_developer_may_not_mint_admin_keys_or_revoke_others_keys(acme, bob, acme_key):
    with pytest.raises(PermissionDenied):
        api_key_create(org=acme, actor=bob, name="root", scopes=["admin"])
    own, _ = api_key_create(org=acme, actor=bob, name="mine", scopes=["proxy"])
    with pytest.raises(PermissionDenied):
        api_key_revoke(org=acme, actor=bob, key=acme_key[0])
    api_key_revoke(org=acme, actor=bob, key=own)
    assert ApiKey.objects.get(pk=own.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=acme_key[0].pk).revoked_at is None


def test_charlie_cannot_create_or_revoke_keys_in_acme(acme, charlie, globex, acme_key):
    with pytest.raises(PermissionDenied):
        api_key_create(org=acme, actor=charlie, name="sneaky", scopes=["proxy"])
    with pytest.raises(PermissionDenied):
        api_key_revoke(org=acme, actor=charlie, key=acme_key[0])


def test_allowed_servers_must_belong_to_the_organisation(acme, alice, globex, charlie):
    foreign = server_create(
        org=globex, actor=charlie, name="G", slug="globex-db", upstream_url="http://127.0.0.1:9/mcp"
    )
    with pytest.raises(ServiceError, match="allowed servers"):
        api_key_create(
            org=acme, actor=alice, name="x", scopes=["proxy"], allowed_server_ids=[foreign.pk]
        )
    own = server_create(
        org=acme, actor=alice, name="A", slug="acme-db", upstream_url="http://127.0.0.1:9/mcp"
    )
    key, plaintext = api_key_create(
        org=acme, actor=alice, name="x", scopes=["proxy"], allowed_server_ids=[own.pk]
    )
    assert verify_key_sync(plaintext)[1].allowed_server_ids == {str(own.pk)}


@pytest.mark.django_db(transaction=True)
async def test_the_async_verifier_caches_and_forgets_on_invalidation(acme_key):
    key, plaintext = acme_key
    verifier = AsyncKeyVerifier(ttl_s=60)
    first = await verifier.verify(plaintext)
    assert first.id == str(key.pk)
    # Revoked in the database: the cache still answers until told, then refuses.
    await sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(revoked_at=timezone.now())
    assert (await verifier.verify(plaintext)).id == str(key.pk)
    verifier.invalidate(key.prefix)
    with pytest.raises(KeyError_) as exc:
        await verifier.verify(plaintext)
    assert exc.value.reason == "revoked"
    with pytest.raises(KeyError_) as exc:
        await verifier.verify(plaintext[:-2] + "zz")
    assert exc.value.reason == "invalid"
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_a_revocation_reaches_another_process_cache(acme, alice, acme_key, settings):
    """Two verifiers stand for two processes; the revocation travels through Redis."""
    from governance.keys import KEY_FLAG_PREFIX
    from governance.runtime.hotstate.redis import RedisHotState

    assert settings.REDIS_URL, "this test needs the Redis hot state"
    key, plaintext = acme_key
    other = AsyncKeyVerifier(ttl_s=3600)
    await other.verify(plaintext)
    hs = RedisHotState(settings.REDIS_URL, prefix=settings.IGRIS_HOTSTATE_PREFIX)
    received = asyncio.Event()

    async def listen():
        async with hs.subscribe_flags() as sub:
            ready.set()
            async for flag, _ in sub:
                if flag == KEY_FLAG_PREFIX + key.prefix:
                    other.invalidate(key.prefix)
                    received.set()
                    return

    ready = asyncio.Event()
    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(ready.wait(), 5)
        await sync_to_async(api_key_revoke)(org=acme, actor=alice, key=key)
        await asyncio.wait_for(received.wait(), 30.0)  # a bound, not a speed: see make bench
        with pytest.raises(KeyError_):
            await other.verify(plaintext)
    finally:
        task.cancel()
        await hs.close()
        await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_a_key_looked_up_before_its_creation_committed_works_as_soon_as_it_is_created(
    acme, alice, monkeypatch
):
    """A key known before its row commits (written to a file inside the creating transaction,
    say) can be tried early; the "no such key" answer must not outlive the creation."""
    from governance import keys

    generated = crypto.generate_api_key()
    monkeypatch.setattr(crypto, "generate_api_key", lambda: generated)
    monkeypatch.setattr(keys, "_verifier", None)
    verifier = keys.get_verifier()
    assert verifier.ttl_s >= 30  # the production TTL: a cached miss would outlast the test
    with pytest.raises(KeyError_) as early:
        await verifier.verify(generated.plaintext)
    assert early.value.reason == "invalid"
    key, plaintext = await sync_to_async(api_key_create)(
        org=acme, actor=alice, name="fresh", scopes=["proxy"]
    )
    assert plaintext == generated.plaintext
    assert (await verifier.verify(plaintext)).id == str(key.pk)
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_a_missed_creation_notice_refuses_a_new_key_for_seconds_not_a_whole_ttl(
    acme_key, monkeypatch
):
    """Another process's verifier never hears of the creation: its cached miss is re-checked
    within seconds (NEGATIVE_TTL_S), while a found key stays cached for the full TTL."""
    from governance import keys

    key, plaintext = acme_key
    clock = [1000.0]
    monkeypatch.setattr(keys, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    verifier = AsyncKeyVerifier(ttl_s=3600)
    row = await sync_to_async(ApiKey.objects.get)(pk=key.pk)
    await sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(prefix="Zz0missing")
    with pytest.raises(KeyError_):
        await verifier.verify(plaintext)
    await sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(prefix=row.prefix)
    with pytest.raises(KeyError_):  # still the cached miss
        await verifier.verify(plaintext)
    clock[0] += 2.0
    assert (await verifier.verify(plaintext)).id == str(key.pk)
    # Found keys keep the long TTL: a change in the database is not seen before it expires.
    await sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(revoked_at=timezone.now())
    clock[0] += 60
    assert (await verifier.verify(plaintext)).id == str(key.pk)
    await sync_to_async(connections.close_all)()
