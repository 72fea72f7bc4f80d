"""Web sessions: a signed cookie naming the account (never the token), and CSRF tokens.

The cookie value is `base64url(json{u, n, e}).signature`: `u` the username, `n` a random nonce
(the session's CSRF secret), `e` the expiry (epoch seconds); the signature is HMAC-SHA256 with the
session key. The key is derived from the install's secret (HMAC of it with a fixed label, so
the blob-URL key and the session key differ): on one machine `local_secret(settings)` (the
`$COGPLANE_HOME/secret` file); elsewhere a random key kept once in the blob store
(`web/session-key`; `COGPLANE_SESSION_KEY` in the environment wins when set).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cogplane.ports import BlobStore
    from cogplane.wiring import Services

SESSION_COOKIE = "cogplane_session"
ANON_COOKIE = "cogplane_anon"  # a nonce that makes the sign-in form's CSRF token
SESSION_SECONDS = 14 * 24 * 3600
_LABEL = b"cogplane web session v1"


def session_key(services: Services) -> bytes:
    if services.web_session_key:
        return services.web_session_key
    if services.settings.session_key:
        base = services.settings.session_key.encode()
    elif services.settings.backend == "local":
        from cogplane.wiring import local_secret

        base = local_secret(services.settings)
    else:
        base = _stored_secret(services.blobs)
    key = hmac.new(base, _LABEL, hashlib.sha256).digest()
    services.web_session_key = key
    return key


def _stored_secret(blobs: BlobStore) -> bytes:
    name = "web/session-key"
    if blobs.head(name) is None:
        blobs.put(name, secrets.token_bytes(32), content_type="application/octet-stream")
    return blobs.get(name)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def make_session(key: bytes, username: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    payload = _b64(
        json.dumps(
            {"u": username, "n": secrets.token_urlsafe(16), "e": int(now) + SESSION_SECONDS}, separators=(",", ":")
        ).encode()
    )
    return f"{payload}.{_sign(key, payload)}"


def read_session(key: bytes, value: str | None, now: float | None = None) -> dict[str, Any] | None:
    """The session's fields if the cookie is genuine and unexpired, else None."""
    if not value or "." not in value:
        return None
    payload, _, signature = value.partition(".")
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode(errors="replace")):
        return None
    try:
        data = json.loads(_unb64(payload))
    except ValueError:
        return None
    now = time.time() if now is None else now
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or data.get("e", 0) < now:
        return None
    return data


def csrf_token(key: bytes, nonce: str) -> str:
    return _sign(key, "csrf:" + nonce)


def csrf_ok(key: bytes, nonce: str | None, token: str | None) -> bool:
    if not nonce or not token:
        return False
    return hmac.compare_digest(csrf_token(key, nonce).encode(), token.encode(errors="replace"))


def new_nonce() -> str:
    return secrets.token_urlsafe(16)
