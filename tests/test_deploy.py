"""Production settings pass Django's deployment checklist and refuse to start without secrets."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _prod_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IGRIS_", "DJANGO_"))}
    env.update(
        IGRIS_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/igris",
        REDIS_URL=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/1",
        ALLOWED_HOSTS="igris.example.com",
        IGRIS_ENCRYPTION_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        IGRIS_AUDIT_SIGNING_KEY=secrets.token_urlsafe(32),
    )
    env.update(overrides)
    return env


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_prod_env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = _prod_env()
    del env["SECRET_KEY"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_a_bad_boolean_in_the_environment_fails_loudly():
    result = _manage("check", env=_prod_env(LOG_JSON="maybe"))
    assert result.returncode != 0
    assert "LOG_JSON='maybe' is not a boolean" in result.stderr
