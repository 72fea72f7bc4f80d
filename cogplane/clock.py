"""Clocks and id sources (injected, so expiry and ordering are testable)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cogplane.domain import ids
from cogplane.domain.timefmt import iso, parse

if TYPE_CHECKING:
    from cogplane.ports import Clock
    from cogplane.settings import Settings


class SystemClock:
    def now(self) -> str:
        return iso(datetime.now(UTC))

    def monotonic(self) -> float:
        return time.monotonic()


class OffsetClock(SystemClock):
    """The system clock shifted by the seconds written in a file (COGPLANE_CLOCK_FILE), re-read on
    every call: tests move a running deployment's clock (e.g. an output URL 61 minutes later) by
    writing a number. A missing or empty file is no shift."""

    def __init__(self, path: str) -> None:
        self.path = path

    def offset(self) -> float:
        try:
            with open(self.path) as fh:
                text = fh.read().strip()
        except OSError:
            return 0.0
        try:
            return float(text) if text else 0.0
        except ValueError:
            return 0.0

    def now(self) -> str:
        return iso(datetime.now(UTC) + timedelta(seconds=self.offset()))

    def monotonic(self) -> float:
        return time.monotonic() + self.offset()


def clock_for(settings: Settings) -> SystemClock:
    """The clock a process runs on: the system's, or shifted by COGPLANE_CLOCK_FILE (tests)."""
    return OffsetClock(settings.clock_file) if settings.clock_file else SystemClock()


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: str = "2026-01-01T00:00:00.000000Z") -> None:
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


def epoch(clock: Clock) -> float:
    """The clock's wall time as unix seconds."""
    return parse(clock.now()).timestamp()
