"""Opaque page cursors: url-safe base64 of a small JSON object of strings.

A cursor comes back from the caller, so it is checked strictly before any value in it reaches a
query: its length, strict JSON, exactly the expected keys, each a short non-empty string.
Anything else is a 400 (a tampered cursor used to reach SQLite/DynamoDB as a list, an object or
a 30-digit number and fail there with a 500)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable

from cogplane.domain import strictjson
from cogplane.domain.errors import InvalidRequest

MAX_CURSOR = 2048  # characters; ours are < 300
MAX_VALUE = 512  # characters per value (DynamoDB refuses sort keys over 1 KiB)
INVALID = "The cursor is not valid; use the `next` URL of a previous page."


def encode(position: dict[str, str]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, keys: Iterable[str]) -> dict[str, str]:
    """The position in `cursor`, which must hold exactly `keys`, each a string; else 400."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR or not cursor.isascii():
        raise InvalidRequest(INVALID)
    try:
        pad = "=" * (-len(cursor) % 4)
        value = strictjson.loads(base64.urlsafe_b64decode(cursor + pad), max_depth=2)
    except (ValueError, binascii.Error) as exc:
        raise InvalidRequest(INVALID) from exc
    if (
        not isinstance(value, dict)
        or set(value) != set(keys)
        or not all(isinstance(v, str) and 0 < len(v) <= MAX_VALUE for v in value.values())
    ):
        raise InvalidRequest(INVALID)
    return value
