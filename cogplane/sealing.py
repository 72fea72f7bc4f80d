"""Secret inputs (cog's `Secret`, `x-cog-secret: true` in the version's input schema).

A secret reaches the model and nothing else: at create, the API replaces each secret value in the
prediction's stored `input` with `**********` (so GET, lists, webhooks, the web UI, streams and the
state store only ever see that) and puts the real values, encrypted, in the job it queues for the
runner (`Job.sealed`). The runner decrypts them just before it sends the input to cog.

Encryption: AES-256-GCM (`cryptography`), a fresh 96-bit nonce per prediction, the prediction id as
associated data (a sealed value cannot be replayed into another prediction). The key is derived
(HKDF-SHA256) from the install's secret: locally COGPLANE_HOME/secret (0600, made on first start);
deployed, COGPLANE_SECRETS_KEY or else the SigningKeys secret in Secrets Manager
(COGPLANE_SIGNING_SECRET_ARN), the same key material the stack already keeps.
"""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any

from cogplane.schema import input_properties_ordered, resolve_prop

if TYPE_CHECKING:
    from cogplane.settings import Settings

REDACTED = "**********"
_VERSION = "v1"


class SealError(Exception):
    """Sealed values could not be opened (another install's key, or tampered)."""


def _is_secret(prop: dict) -> bool:
    return prop.get("x-cog-secret") is True


def secret_inputs(schema: dict) -> dict[str, bool]:
    """Inputs that are secrets -> is it a list of them."""
    found: dict[str, bool] = {}
    for name, prop in input_properties_ordered(schema or {}):
        resolved = resolve_prop(schema, prop)
        items = resolved.get("items") if isinstance(resolved.get("items"), dict) else None
        if _is_secret(resolved):
            found[name] = False
        elif resolved.get("type") == "array" and items is not None and _is_secret(items):
            found[name] = True
    return found


def split_secrets(schema: dict, value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the input to store, with every secret value as `**********`; the secret values)."""
    names = secret_inputs(schema)
    stored = dict(value)
    secrets: dict[str, Any] = {}
    for name, is_list in names.items():
        if name not in value or value[name] is None:
            continue
        secrets[name] = value[name]
        stored[name] = [REDACTED for _ in value[name]] if is_list and isinstance(value[name], list) else REDACTED
    return stored, secrets


def scrub(text: str | None, secrets: dict[str, Any]) -> str | None:
    """`text` with every secret value (4 characters or more) replaced by `**********`."""
    if not text or not secrets:
        return text
    values: list[str] = []
    for value in secrets.values():
        values.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


def derive_key(material: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cogplane secret inputs v1").derive(material)


class SecretBox:
    """Seals a prediction's secret values for its runner (and nobody else)."""

    def __init__(self, material: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(derive_key(material))

    def seal(self, prediction_id: str, values: dict[str, Any]) -> str:
        nonce = os.urandom(12)
        data = self._aead.encrypt(nonce, json.dumps(values).encode(), prediction_id.encode())
        return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + data).decode().rstrip('=')}"

    def open(self, prediction_id: str, sealed: str) -> dict[str, Any]:
        from cryptography.exceptions import InvalidTag

        version, _, body = sealed.partition(".")
        if version != _VERSION or not body:
            raise SealError("unknown sealed format")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = self._aead.decrypt(raw[:12], raw[12:], prediction_id.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealError("the secret inputs could not be decrypted with this install's key") from exc
        values = json.loads(data)
        if not isinstance(values, dict):
            raise SealError("sealed secret inputs are not an object")
        return values


def key_material(settings: Settings) -> bytes:
    """The install's secret the encryption key is derived from (see the module's docstring)."""
    if settings.secrets_key:
        return settings.secrets_key.encode()
    if settings.signing_secret_arn:
        from cogplane.adapters.aws.clients import client

        return client("secretsmanager").get_secret_value(SecretId=settings.signing_secret_arn)["SecretString"].encode()
    if settings.backend == "local":
        from cogplane.wiring import local_secret

        return local_secret(settings)
    raise RuntimeError("No key for secret inputs: set COGPLANE_SECRETS_KEY or COGPLANE_SIGNING_SECRET_ARN.")


# --- stream tokens ----------------------------------------------------------------------------
STREAM_GRACE_SECONDS = 60  # a stream URL works while its prediction runs and this long after


class StreamTokens:
    """The token in a prediction's stream URL: unguessable without the install's key and unrelated
    to the prediction id as far as anyone else can tell (AES-256-GCM of the id, with a nonce derived
    from the id so that every GET and webhook shows the same URL). Only the server opens it."""

    def __init__(self, material: bytes) -> None:
        import hashlib
        import hmac

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        keys = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"cogplane stream tokens v1").derive(material)
        self._aead = AESGCM(keys[:32])
        self._nonce_key = keys[32:]
        self._hmac, self._sha256 = hmac, hashlib.sha256

    def token(self, prediction_id: str) -> str:
        nonce = self._hmac.new(self._nonce_key, prediction_id.encode(), self._sha256).digest()[:12]
        data = self._aead.encrypt(nonce, prediction_id.encode(), b"stream")
        return base64.urlsafe_b64encode(nonce + data).decode().rstrip("=")

    def prediction_id(self, token: str) -> str | None:
        """The prediction a token names, or None for anything this install did not make."""
        from cryptography.exceptions import InvalidTag

        if not token or len(token) > 256:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            if len(raw) < 12 + 16 + 1:
                return None
            return self._aead.decrypt(raw[:12], raw[12:], b"stream").decode()
        except (InvalidTag, ValueError, UnicodeDecodeError):
            return None
