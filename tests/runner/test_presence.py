"""gpu_runner.presence: the runner's record (its state, what it holds, its doorbell), leases kept
while it boots and with every beat, and a doorbell that wakes it."""

from __future__ import annotations

import socket
import threading

from cogplane.domain.entities import Job, Runner
from gpu_runner.presence import Presence
from tests.runner.conftest import wait_until


class Leases:
    """A queue that only counts lease extensions (the real queues' release is tested elsewhere)."""

    def __init__(self) -> None:
        self.released: list[tuple[str, float]] = []

    def release(self, job: Job, delay: float) -> None:
        self.released.append((job.prediction_id, delay))


def _presence(services, held: list[Job], queue: Leases) -> Presence:
    services.queue = queue
    record = Runner(id="r-p", pool="v-x", pid=1, host="h", started_at="t", heartbeat_at="t")
    return Presence(services, record, held=lambda: list(held), lease_seconds=0.3, heartbeat_seconds=0.05)


def test_the_record_shows_the_state_and_what_is_held(services):
    held = [Job(prediction_id="p1", pool="v-x", enqueued_at="t")]
    queue = Leases()
    presence = _presence(services, held, queue)
    rung = threading.Event()
    presence.start(ring=rung.set)
    try:
        record = services.state.get_runner("r-p")
        assert record.state == "booting" and record.in_flight == ["p1"] and record.doorbell.startswith("127.0.0.1:")
        host, port = record.doorbell.split(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bell:
            bell.sendto(b"x", (host, int(port)))
        assert rung.wait(5)
        presence.set_state("ready")
        assert services.state.get_runner("r-p").state == "ready"
        assert ("p1", 0.3) in queue.released  # every beat extends the held jobs' leases
        held.clear()
        assert wait_until(lambda: services.state.get_runner("r-p").in_flight == [], 5)
    finally:
        presence.close()
    assert services.state.get_runner("r-p") is None


def test_a_booting_jobs_lease_is_kept_for_the_block(services):
    queue = Leases()
    presence = _presence(services, [], queue)
    job = Job(prediction_id="p2", pool="v-x", enqueued_at="t")
    with presence.leased(job):
        assert wait_until(lambda: len(queue.released) >= 2, 5)
    count = len(queue.released)
    threading.Event().wait(0.3)
    assert len(queue.released) <= count + 1  # at most one in flight when the block ended
    with presence.leased(None):
        pass


def test_a_beat_asked_for_writes_the_record_and_leaves_the_fresh_lease_alone(services):
    """`beat_now` is rung for every job the runner takes: it records the job (after
    `record_delay`), but does not extend leases (the job's is fresh); the regular beat, every
    heartbeat_seconds, does."""
    held: list[Job] = []
    queue = Leases()
    presence = _presence(services, held, queue)
    presence.heartbeat_seconds = 60.0  # no regular beat during the test
    presence.start(ring=lambda: None)
    try:
        start_writes = len(queue.released)
        held.append(Job(prediction_id="p3", pool="v-x", enqueued_at="t"))
        presence.beat_now.set()
        assert wait_until(lambda: services.state.get_runner("r-p").in_flight == ["p3"], 5)
        assert len(queue.released) == start_writes
    finally:
        presence.close()


class CountingState:
    """The state store, counting the runner record's writes."""

    def __init__(self, state) -> None:
        self.state = state
        self.writes: list[list[str]] = []

    def put_runner(self, record: Runner) -> None:
        self.writes.append(list(record.in_flight))
        self.state.put_runner(record)

    def __getattr__(self, name: str):
        return getattr(self.state, name)


def test_a_prediction_that_ended_before_the_record_delay_costs_no_write_and_a_burst_costs_one(services):
    """Under load a runner takes hundreds of predictions a second, most of them over in a few ms:
    the record is written `record_delay` after a ring, only when something held then is new, so a
    prediction already over costs no write, and every one taken within the delay shares one."""
    held: list[Job] = []
    counting = CountingState(services.state)
    services.state = counting
    presence = _presence(services, held, Leases())
    presence.heartbeat_seconds = 60.0
    presence.record_delay = 0.3
    presence.start(ring=lambda: None)
    try:
        first = len(counting.writes)
        held.append(Job(prediction_id="short", pool="v-x", enqueued_at="t"))
        presence.beat_now.set()
        held.clear()  # it ended within the delay
        threading.Event().wait(0.6)
        assert len(counting.writes) == first
        for n in range(5):
            held.append(Job(prediction_id=f"p{n}", pool="v-x", enqueued_at="t"))
            presence.beat_now.set()
        assert wait_until(lambda: len(counting.writes) > first, 5)
        threading.Event().wait(0.6)
        assert counting.writes[first:] == [[f"p{n}" for n in range(5)]]
        assert services.state.get_runner("r-p").in_flight == [f"p{n}" for n in range(5)]
    finally:
        presence.close()
