"""Clocks and id sources (injected, so expiry and ordering are testable)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from cogplane.domain import ids
from cogplane.domain.timefmt import iso, parse


class SystemClock:
    def now(self) -> str:
        return iso(datetime.now(UTC))

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: str = "2026-01-01T00:00:00.000000Z"):
        self._now = parse(start)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> str:
        with self._lock:
            return iso(self._now)

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds


class RandomIds:
    def prediction_id(self) -> str:
        return ids.new_prediction_id()


def epoch(clock) -> float:
    """The clock's wall time as unix seconds."""
    return parse(clock.now()).timestamp()
