"""Identifiers: 26-char lowercase base32 prediction ids, 64-hex version ids, API tokens."""

from __future__ import annotations

import base64
import hashlib
import secrets


def new_prediction_id() -> str:
    """26 lowercase base32 characters (130 random bits, like Replicate's ids)."""
    raw = secrets.token_bytes(17)  # 136 bits -> 28 base32 chars; we keep 26 (130 bits)
    return base64.b32encode(raw).decode("ascii").lower()[:26]


def version_id_for(bundle: bytes) -> str:
    """A source version's id is the sha256 of its bundle: identical content, identical id."""
    return hashlib.sha256(bundle).hexdigest()


def new_token() -> str:
    """An API token, shaped like Replicate's (`r8_` + 37 url-safe characters)."""
    return "r8_" + secrets.token_urlsafe(28)[:37]


def hash_token(token: str) -> str:
    """Tokens are stored only as this hash."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_prediction_id(value: str) -> bool:
    return len(value) == 26 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in value)


def is_version_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
