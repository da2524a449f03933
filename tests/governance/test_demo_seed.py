"""The demo organisation that `make run` seeds (governance/demo/seed.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from django.db import connection

from governance.demo.seed import seed_demo
from governance.keys import KeyError_, verify_key_sync

UPSTREAM = "http://127.0.0.1:9/mcp"


def _seed(tmp_path: Path):
    return seed_demo(
        base_url="http://127.0.0.1:3300",
        upstream_url=UPSTREAM,
        state_path=tmp_path / "demo.json",
    )


def _verify_elsewhere(token: str) -> str:
    """Verify a key on another thread, so on another database connection: what a web process
    sees, not the seeding transaction."""
    outcome: list[str] = []

    def run() -> None:
        try:
            outcome.append(verify_key_sync(token)[1].id)
        except KeyError_ as exc:
            outcome.append(f"refused: {exc.reason}")
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0]


@pytest.mark.django_db(transaction=True)
def test_the_demo_key_is_committed_before_it_is_written_to_demo_json(tmp_path, monkeypatch):
    state_path = tmp_path / "demo.json"
    seen_when_written: list[str] = []
    write_text = Path.write_text

    def spy(self: Path, data: str, *args, **kwargs):
        if self == state_path:
            seen_when_written.append(_verify_elsewhere(json.loads(data)["api_key"]))
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spy)
    info = _seed(tmp_path)
    assert len(seen_when_written) == 1
    assert not seen_when_written[0].startswith("refused"), seen_when_written[0]
    assert json.loads(state_path.read_text())["api_key"] == info.api_key


@pytest.mark.django_db(transaction=True)
def test_a_restart_keeps_the_demo_key_and_login_that_still_work(tmp_path):
    first = _seed(tmp_path)
    second = _seed(tmp_path)
    assert (second.api_key, second.password) == (first.api_key, first.password)
    assert not _verify_elsewhere(second.api_key).startswith("refused")
