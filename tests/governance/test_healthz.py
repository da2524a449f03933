from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connections


@pytest.mark.django_db(transaction=True)
async def test_healthz_reports_database_and_hot_state_as_json():
    from igris_project.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.get("/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["hotstate"]["ok"] is True
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_503_when_hot_state_is_down(monkeypatch):
    from governance.runtime import hotstate
    from igris_project.asgi import application

    class Down:
        async def ping(self):
            raise ConnectionError("redis is down")

    monkeypatch.setattr(hotstate, "get_hotstate", lambda: Down())
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["hotstate"]["ok"] is False
    await sync_to_async(connections.close_all)()
