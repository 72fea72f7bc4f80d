"""Completion notices (cogplane/adapters/local/completions.py): the single-machine API learns that a
prediction ended from the process that wrote the end, instead of polling the store."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from cogplane.adapters.local.completions import CompletionHub, CompletionNotifier, notify_dir
from cogplane.adapters.local.sqlite import Database, SqliteStateStore
from cogplane.clock import RandomIds, SystemClock
from cogplane.domain.entities import Prediction
from cogplane.services.predictions import PredictionService
from cogplane.wiring import NoDispatcher

TS = "2026-11-30T00:00:00.000000Z"


@pytest.fixture
def hub(tmp_path: Path):
    hub = CompletionHub(str(tmp_path / "notify")).start()
    yield hub
    hub.stop()


def test_a_notice_wakes_the_waiter_of_that_prediction_only(hub: CompletionHub) -> None:
    notifier = CompletionNotifier(hub.directory)
    with hub.watching("p1") as one, hub.watching("p2") as two:
        notifier.ended("p1")
        assert hub.wait(one, 10) is True
        assert hub.wait(two, 0.05) is False


def test_a_notice_sent_before_the_wait_is_not_lost(hub: CompletionHub) -> None:
    notifier = CompletionNotifier(hub.directory)
    with hub.watching("p1") as waiter:
        notifier.ended("p1")  # between registering and waiting
        deadline = threading.Event()
        deadline.wait(0.2)  # the listener thread has delivered it by now (or soon)
        assert asyncio.run(hub.wait_async(waiter, 10)) is True


def test_async_waiter_wakes_on_a_notice_from_another_thread(hub: CompletionHub) -> None:
    notifier = CompletionNotifier(hub.directory)

    async def scenario() -> tuple[bool, bool]:
        with hub.watching("p9") as waiter:
            timer = threading.Timer(0.05, notifier.ended, args=("p9",))
            timer.start()
            woke = await hub.wait_async(waiter, 10)
            again = await hub.wait_async(waiter, 0.05)  # nothing more: times out
            return woke, again

    assert asyncio.run(scenario()) == (True, False)
    # the event loop read the notice itself: no listener thread was needed for an async waiter
    assert hub._thread is None


def test_a_thread_waiter_and_an_async_waiter_are_both_woken(hub: CompletionHub) -> None:
    """The loop reads the socket once an async waiter attached it; a thread that waits starts the
    listener thread too: whichever takes the notice wakes every waiter of the prediction."""
    notifier = CompletionNotifier(hub.directory)
    woke_thread: list[bool] = []

    async def scenario() -> bool:
        with hub.watching("p5") as in_loop, hub.watching("p5") as in_thread:
            waiting = threading.Thread(target=lambda: woke_thread.append(hub.wait(in_thread, 10)))
            waiting.start()
            await asyncio.sleep(0.05)
            notifier.ended("p5")
            woke = await hub.wait_async(in_loop, 10)
            await asyncio.to_thread(waiting.join, 10)
            return woke

    assert asyncio.run(scenario()) is True
    assert woke_thread == [True]


def test_a_listener_that_is_gone_is_forgotten(tmp_path: Path) -> None:
    directory = tmp_path / "notify"
    directory.mkdir()
    (directory / "cogplane-1-dead").write_text("")  # announced, but nobody binds that name
    CompletionNotifier(str(directory)).ended("p1")
    assert not (directory / "cogplane-1-dead").exists()


def test_no_listener_and_in_memory_databases_cost_nothing(tmp_path: Path) -> None:
    assert notify_dir(":memory:") is None
    CompletionNotifier(None).ended("p1")
    CompletionNotifier(str(tmp_path / "never-made")).ended("p1")
    hub = CompletionHub(str(tmp_path / "notify")).start()
    announced = tmp_path / "notify" / hub.name
    assert announced.exists()
    hub.stop()
    assert not announced.exists()


def _service(db_path: Path) -> tuple[SqliteStateStore, PredictionService]:
    state = SqliteStateStore(Database(str(db_path)))
    service = PredictionService(state, None, NoDispatcher(), SystemClock(), RandomIds())
    return state, service


def test_the_state_store_announces_an_end_and_wait_returns_it(tmp_path: Path) -> None:
    db_path = tmp_path / "state.db"
    hub = CompletionHub(notify_dir(str(db_path))).start()
    try:
        state, service = _service(db_path)
        service.completions = hub
        hub.fallback_seconds = 30  # only a notice can end the wait in time
        state.create_prediction(
            Prediction(id="p1", owner="alice", model="alice/m", version="v", input={}, created_at=TS)
        )
        writer_state, _ = _service(db_path)  # another connection, as a runner's process has

        def finish() -> None:
            writer_state.update_prediction("p1", {"status": "processing", "started_at": TS})
            writer_state.update_prediction("p1", {"status": "succeeded", "completed_at": TS, "output": "hi"})

        threading.Timer(0.1, finish).start()
        received = hub.received
        ended = service.wait("p1", 20)
        assert ended.status == "succeeded" and ended.output == "hi"
        assert hub.received == received + 1  # one notice: the end, not the start

        state.create_prediction(
            Prediction(id="p2", owner="alice", model="alice/m", version="v", input={}, created_at=TS)
        )
        threading.Timer(0.1, lambda: writer_state.update_prediction("p2", {"status": "canceled"})).start()
        ended = asyncio.run(service.wait_async("p2", 20))
        assert ended.status == "canceled"
    finally:
        hub.stop()


def test_a_notice_taken_before_the_waiter_registered_still_wakes_it(hub: CompletionHub) -> None:
    """`watching` after the notice was read (the create's prediction ended before its waiter
    registered): the hub keeps the last notices' ids, so the waiter starts woken."""
    notifier = CompletionNotifier(hub.directory)
    with hub.watching("other") as other:
        notifier.ended("early")
        notifier.ended("other")
        assert hub.wait(other, 10) is True  # the listener thread has taken both by now
    with hub.watching("early") as waiter, hub.watching("never") as idle:
        assert hub.wait(waiter, 0) is True
        assert hub.wait(idle, 0) is False


def test_the_recent_notices_are_bounded(hub: CompletionHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from cogplane.adapters.local import completions

    monkeypatch.setattr(completions, "RECENT", 3)
    for n in range(5):
        hub._received(f"p{n}".encode())
    hub._received(b"p4")  # a repeat is kept once
    assert list(hub._recent) == ["p2", "p3", "p4"] and set(hub._recent) == {"p2", "p3", "p4"}


def test_an_unended_wait_skips_the_first_read_but_never_misses_the_end(tmp_path: Path) -> None:
    """`wait_async(..., unended=True)` (a create that waits): no read before the first wait, and an
    end announced before the waiter registered still ends the wait at once (not after the
    fallback re-read, made 30 s here)."""
    db_path = tmp_path / "state.db"
    hub = CompletionHub(notify_dir(str(db_path))).start()
    try:
        state, service = _service(db_path)
        service.completions = hub
        hub.fallback_seconds = 30
        reads: list[str] = []
        read = state.get_prediction
        state.get_prediction = lambda pid: reads.append(pid) or read(pid)  # type: ignore[method-assign]
        for pid in ("p1", "p2"):
            state.create_prediction(
                Prediction(id=pid, owner="alice", model="alice/m", version="v", input={}, created_at=TS)
            )

        async def scenario() -> tuple[str, str]:
            # p1 ends before anyone waits, and the loop reads that notice before the waiter registers
            writer_state, _ = _service(db_path)
            writer_state.update_prediction("p1", {"status": "processing", "started_at": TS})
            writer_state.update_prediction("p1", {"status": "succeeded", "completed_at": TS})
            with hub.watching("p2") as warm_up:  # attaches the loop as the socket's reader
                await hub.wait_async(warm_up, 0.01)
            for _ in range(100):
                if "p1" in hub._recent:
                    break
                await asyncio.sleep(0.01)
            first = await asyncio.wait_for(service.wait_async("p1", 60, unended=True), 10)
            # p2 ends while its waiter waits
            threading.Timer(0.1, lambda: writer_state.update_prediction("p2", {"status": "canceled"})).start()
            second = await asyncio.wait_for(service.wait_async("p2", 60, unended=True), 10)
            return first.status, second.status

        assert asyncio.run(scenario()) == ("succeeded", "canceled")
        assert reads == ["p1", "p2"]  # one read each: after the notice, none before the wait
    finally:
        hub.stop()


def test_wait_without_a_hub_still_polls(tmp_path: Path) -> None:
    state, service = _service(tmp_path / "state.db")
    state.create_prediction(Prediction(id="p1", owner="alice", model="alice/m", version="v", input={}, created_at=TS))
    threading.Timer(0.05, lambda: state.update_prediction("p1", {"status": "failed", "error": "x"})).start()
    assert service.wait("p1", 20).status == "failed"
    assert asyncio.run(service.wait_async("p1", 1)).status == "failed"
    assert not os.path.exists(str(tmp_path / "state.db") + ".notify")


def test_a_name_that_is_not_utf8_in_the_folder_does_not_break_the_writer(tmp_path: Path) -> None:
    # ended() runs after the terminal write is committed: raising there failed the writer's transition
    directory = tmp_path / "notify"
    directory.mkdir()
    os.close(os.open(os.fsencode(str(directory)) + b"/cogplane-\xff\xfe", os.O_CREAT | os.O_WRONLY, 0o600))
    (directory / ("cogplane-" + "x" * 200)).write_text("")  # longer than a socket name may be
    CompletionNotifier(str(directory)).ended("p1")


def test_a_hub_that_cannot_start_leaves_the_api_polling(tmp_path: Path) -> None:
    from cogplane.adapters.local.completions import start_hub

    occupied = tmp_path / "state.db.notify"
    occupied.write_text("a file where the folder should be")
    assert start_hub(str(occupied)) is None
    hub = start_hub(str(tmp_path / "fine.notify"))
    assert hub is not None
    hub.stop()
