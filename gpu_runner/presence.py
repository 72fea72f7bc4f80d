"""The runner's presence: its record in the state store (heartbeats, its state, the predictions
it holds), the leases of its jobs, and its doorbell.

- Heartbeats go on while the runner stops: the predictions a stopping runner still holds are its
  own (no "lost runner" while they finish). `beat_now` asks for the record to be written at once
  (a prediction was just taken: the local dispatcher finds a dead runner's predictions through
  this record); the leases are extended on the regular beat.
- The doorbell is a UDP socket on 127.0.0.1, announced in the record: any datagram (the local
  dispatcher sends one on every enqueue) means "there may be work" and rings `ring`.
- `leased(job)` keeps one job's lease while the runner boots (environment builds take minutes).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from cogplane.domain.entities import Job, Runner

log = logging.getLogger("cogplane.runner")

# A prediction just taken is added to the runner's record this long after (if still held): the
# expirer finds a lost runner's predictions by that record (deployed; the local dispatcher also
# finds them by the predictions' runner_id). Short, as a runner killed before the write leaves its
# prediction to the prediction's timeout there; long enough that under load (hundreds a second)
# one write covers many predictions and most have ended before it.
RECORD_DELAY_S = 0.05


class Presence:
    def __init__(
        self,
        services: Any,
        record: Runner,
        *,
        held: Callable[[], list[Job]],
        lease_seconds: float = 60.0,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        """`held()` lists the jobs of the predictions the runner holds (their ids are recorded,
        their leases extended with every beat)."""
        self.state = services.state
        self.queue = services.queue
        self.clock = services.clock
        self.record = record
        self.held = held
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.beat_now = threading.Event()
        self.record_delay = RECORD_DELAY_S
        self.stopped = threading.Event()  # the runner is gone: heartbeats end
        self.doorbell: socket.socket | None = None

    def write_record(self) -> None:
        self.record.in_flight = [job.prediction_id for job in self.held()]
        self.record.heartbeat_at = self.clock.now()
        self.state.put_runner(self.record)

    def heartbeat(self) -> None:
        self.write_record()
        for job in self.held():  # keep the leases of the jobs we hold
            try:
                self.queue.release(job, delay=self.lease_seconds)
            except Exception:  # noqa: BLE001 - a lost lease is harmless: processing is guarded by state
                log.debug("could not extend lease", exc_info=True)

    def set_state(self, value: str) -> None:
        self.record.state = value
        self.heartbeat()

    def start(self, ring: Callable[[], None]) -> None:
        """Open the doorbell, record the runner as booting, and beat from now on."""
        self.open_doorbell(ring)
        self.set_state("booting")
        threading.Thread(target=self._beats, name="heartbeat", daemon=True).start()

    def _beats(self) -> None:
        """A full beat (record + leases) every `heartbeat_seconds`; between them, `beat_now` writes
        the record only: it is rung for a job just claimed, whose lease is fresh (extending every
        held lease there was one more queue write per prediction under load). That write waits
        `record_delay` seconds and is skipped when every prediction held then is recorded already:
        a prediction that ended by then needs no record, and under load one write covers all the
        predictions taken meanwhile (it was one write per prediction)."""
        due = time.monotonic() + self.heartbeat_seconds
        while not self.stopped.is_set():
            rung = self.beat_now.wait(max(0.0, due - time.monotonic()))
            if rung and time.monotonic() < due and self.stopped.wait(self.record_delay):
                return
            self.beat_now.clear()
            if self.stopped.is_set():
                return
            try:
                if time.monotonic() >= due:
                    due = time.monotonic() + self.heartbeat_seconds
                    self.heartbeat()
                elif {job.prediction_id for job in self.held()} - set(self.record.in_flight):
                    self.write_record()
            except Exception:  # noqa: BLE001 - keep beating; a missed beat is not fatal
                log.warning("heartbeat failed", exc_info=True)

    def open_doorbell(self, ring: Callable[[], None]) -> None:
        doorbell = self.doorbell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        doorbell.bind(("127.0.0.1", 0))
        self.record.doorbell = f"127.0.0.1:{doorbell.getsockname()[1]}"

        def listen() -> None:
            while not self.stopped.is_set():
                try:
                    doorbell.recv(64)
                except OSError:  # closed
                    return
                ring()

        threading.Thread(target=listen, name="doorbell", daemon=True).start()

    @contextlib.contextmanager
    def leased(self, job: Job | None) -> Iterator[None]:
        """Keep `job`'s lease for as long as the block runs."""
        if job is None:
            yield
            return
        done = threading.Event()

        def keep() -> None:
            while not done.wait(min(10.0, self.lease_seconds / 3)):
                try:
                    self.queue.release(job, delay=self.lease_seconds)
                except Exception:  # noqa: BLE001 - the next try, or the heartbeat's, may work
                    log.debug("could not extend the boot job's lease", exc_info=True)

        threading.Thread(target=keep, name="boot-lease", daemon=True).start()
        try:
            yield
        finally:
            done.set()

    def close(self) -> None:
        """The runner is gone: no more beats, no doorbell, no record."""
        if self.doorbell:
            self.doorbell.close()
        self.stopped.set()
        try:
            self.state.delete_runner(self.record.id)
        except Exception:  # noqa: BLE001 - the dispatcher's lost-runner check removes it anyway
            log.debug("could not delete the runner record", exc_info=True)
