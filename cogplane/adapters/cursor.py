"""Opaque page cursors: url-safe base64 of a small JSON object."""

from __future__ import annotations

import base64
import json
from typing import Any

from cogplane.domain.errors import InvalidRequest


def encode(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> dict[str, Any]:
    try:
        pad = "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(cursor + pad))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("The cursor is not valid; use the `next` URL of a previous page.") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("The cursor is not valid; use the `next` URL of a previous page.")
    return value
