"""The proxy's per-process caches stay bounded whatever clients ask for."""

from __future__ import annotations

from proxy.ttlcache import TtlCache


async def test_the_cache_loads_once_and_stays_bounded_under_many_unknown_keys():
    loads: list[str] = []

    def loader(name: str) -> None:
        loads.append(name)

    cache = TtlCache(ttl_s=60, max_entries=100)
    assert await cache.get("a", loader, "a") is None
    assert await cache.get("a", loader, "a") is None
    assert loads == ["a"]
    for i in range(1_000):
        await cache.get(f"unknown-{i}", loader, f"unknown-{i}")
    assert len(cache._data) <= 100
    assert cache._locks == {}
