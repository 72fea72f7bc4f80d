"""A create in an API worker process (ForwardedWake): it rings the ready runners of its pool
itself, and tells the dispatcher in the first process over a datagram, which then wakes the pool
as for its own creates. Real sockets, a real dispatcher and a real SQLite store."""

from __future__ import annotations

import socket
import time

import pytest

from cogplane.adapters.local import dispatcher as dispatcher_module
from cogplane.adapters.local.dispatcher import ForwardedWake, ProcessDispatcher, wake_address
from cogplane.adapters.local.sqlite import Database
from cogplane.domain.entities import Runner
from tests.runner.conftest import wait_until

POOL = "v-" + "ab" * 32
COLD = "v-" + "cd" * 32


class Heard(ProcessDispatcher):
    """The dispatcher, noting the wakes it hears (and doing what it always does with them)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.heard: list[str] = []

    def wake(self, pool: str) -> None:  # a create the worker could ring no runner for
        self.heard.append(pool)
        super().wake(pool)

    def look(self, pool: str) -> None:  # a create whose runners the worker rang
        self.heard.append("+" + pool)
        super().look(pool)


def _bell() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def _rang(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(16) == b"w"
    except TimeoutError:
        return False


@pytest.fixture
def heard(services, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(dispatcher_module, "POKE_EVERY_S", 60.0)  # at most one forward per pool here
    address = wake_address(str(settings.db_path))
    d = Heard(Database(str(settings.db_path)), services, log_dir=tmp_path / "logs", wake_address=address)
    d.start()  # (its start forgets runner records of an earlier run: the tests add theirs after)
    try:
        yield d
    finally:
        d.stop(0)


def test_a_worker_rings_the_ready_runners_and_tells_the_dispatcher(heard, services, settings):
    ready, booting, other = _bell(), _bell(), _bell()
    for runner_id, sock, state, pool in (
        ("r-ready", ready, "ready", POOL),
        ("r-booting", booting, "booting", POOL),
        ("r-other", other, "ready", COLD[:-1] + "e"),
    ):
        services.state.put_runner(
            Runner(id=runner_id, pool=pool, state=state, doorbell=f"127.0.0.1:{sock.getsockname()[1]}")
        )
    wake = ForwardedWake(services.state, wake_address(str(settings.db_path)))
    wake.wake(POOL)
    assert _rang(ready, 2.0)
    assert wait_until(lambda: heard.heard == ["+" + POOL], timeout=5.0)  # rung already: the dispatcher only looks
    assert not _rang(booting, 0.2)  # not serving yet: it claims once it is
    assert not _rang(other, 0.05)  # another pool's runner
    wake.wake(POOL)  # every create rings the runners ...
    assert _rang(ready, 2.0)
    time.sleep(0.2)
    assert heard.heard == ["+" + POOL]  # ... the dispatcher hears of a served pool at most every POKE_EVERY_S
    for sock in (ready, booting, other):
        sock.close()


def test_a_pool_without_a_ready_runner_is_told_every_time(heard, services, settings):
    """No runner to ring: each create asks the dispatcher at once (it boots one)."""
    wake = ForwardedWake(services.state, wake_address(str(settings.db_path)))
    wake.wake(COLD)
    wake.wake(COLD)
    assert wait_until(lambda: heard.heard == [COLD, COLD], timeout=5.0)


def test_the_dispatcher_drops_what_is_no_pool_name(heard, settings):
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for junk in (b"", b"+", b"../../etc/passwd", b"\xff\xfe", b"x-" + b"a" * 40, b"v-", b"++v-ab"):
        sender.sendto(junk, wake_address(str(settings.db_path)))
    sender.sendto(COLD.encode(), wake_address(str(settings.db_path)))  # datagrams keep their order
    assert wait_until(lambda: heard.heard == [COLD], timeout=5.0)
    sender.close()


def test_without_a_listening_dispatcher_a_create_does_not_fail(services, tmp_path):
    """The first process is stopping (or gone): the worker's create goes on; the tick, or the next
    start, finds the work."""
    wake = ForwardedWake(services.state, wake_address(str(tmp_path / "nobody.db")))
    wake.wake(COLD)
    wake.wake(POOL)
