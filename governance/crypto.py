"""Secrets at rest: API key hashing and AES-256-GCM for upstream credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import string
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_PREFIX = "ig_"
PREFIX_LEN = 8
SECRET_BYTES = 30  # 40 URL-safe characters, 240 bits
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class GeneratedKey:
    plaintext: str
    prefix: str
    salt: str
    secret_hash: str


def hash_secret(salt: str, secret: str) -> str:
    # API key secrets carry 240 random bits, so a keyed SHA-256 is enough (no stretching needed)
    # and keeps cache-miss verification in the microseconds.
    return hmac.new(salt.encode(), secret.encode(), hashlib.sha256).hexdigest()


def generate_api_key() -> GeneratedKey:
    prefix = "".join(secrets.choice(_ALNUM) for _ in range(PREFIX_LEN))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_hex(16)
    return GeneratedKey(
        plaintext=f"{KEY_PREFIX}{prefix}{secret}",
        prefix=prefix,
        salt=salt,
        secret_hash=hash_secret(salt, secret),
    )


def split_api_key(token: str) -> tuple[str, str] | None:
    """Return (prefix, secret) for a well-formed key, else None."""
    if not token.startswith(KEY_PREFIX) or len(token) < len(KEY_PREFIX) + PREFIX_LEN + 32:
        return None
    if len(token) > 200:
        return None
    prefix = token[len(KEY_PREFIX) : len(KEY_PREFIX) + PREFIX_LEN]
    secret = token[len(KEY_PREFIX) + PREFIX_LEN :]
    if not all(c in _ALNUM for c in prefix):
        return None
    return prefix, secret


def verify_secret(salt: str, secret: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(salt, secret), expected_hash)


def hash_token(token: str) -> str:
    """Digest for single-use tokens (invitations) looked up by value."""
    return hashlib.sha256(token.encode()).hexdigest()


def _aes_key() -> bytes:
    from django.conf import settings

    raw = base64.urlsafe_b64decode(settings.IGRIS_ENCRYPTION_KEY.encode())
    if len(raw) != 32:
        raise ValueError("IGRIS_ENCRYPTION_KEY must be 32 bytes, url-safe base64 encoded")
    return raw


def encrypt(plaintext: str, *, context: str) -> bytes:
    """AES-256-GCM; `context` (e.g. the server id) is bound as associated data."""
    nonce = os.urandom(12)
    return b"v1" + nonce + AESGCM(_aes_key()).encrypt(nonce, plaintext.encode(), context.encode())


def decrypt(blob: bytes, *, context: str) -> str:
    blob = bytes(blob)
    if not blob.startswith(b"v1"):
        raise ValueError("unknown credential format")
    nonce, ciphertext = blob[2:14], blob[14:]
    return AESGCM(_aes_key()).decrypt(nonce, ciphertext, context.encode()).decode()
