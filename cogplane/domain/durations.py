"""Go-style durations (`500ms`, `30s`, `5m`, `1h30m`), as accepted by Cancel-After."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = r"(\d{1,15}(?:\.\d{0,15})?|\.\d{1,15})"  # plain decimals: no exponent, inf, nan or `_`
_PART = re.compile(_NUMBER + r"(ns|us|µs|ms|s|m|h)")
_BARE = re.compile(_NUMBER)


def parse_duration(text: str, *, maximum: float | None = None) -> float:
    """Seconds in a Go duration string. A bare number means seconds. Raises ValueError, also
    above `maximum` seconds."""
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    if _BARE.fullmatch(value):
        seconds = float(value)
    else:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                raise ValueError(f"invalid duration {text!r}") from None
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value):
            raise ValueError(f"invalid duration {text!r}") from None
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    if maximum is not None and seconds > maximum:
        raise ValueError(f"duration is longer than the maximum of {maximum:g} seconds: {text!r}")
    return seconds
