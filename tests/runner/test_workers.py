"""gpu_runner.runner.Workers: the threads that wait on cog's sync answers are kept between
predictions (their SQLite connections with them), and a task never waits for another to end."""

from __future__ import annotations

import threading

from gpu_runner.runner import Workers


def test_a_finished_tasks_thread_takes_the_next_and_a_blocked_one_does_not_hold_it_up() -> None:
    workers = Workers("t", idle_s=5)
    names: list[str] = []
    done = threading.Event()

    def record() -> None:
        names.append(threading.current_thread().name)
        done.set()

    for _ in range(3):  # one after another: the same thread each time
        done.clear()
        workers.submit(record)
        assert done.wait(5)
        deadline = threading.Event()
        while workers.idle == 0 and not deadline.wait(0.01):
            pass
    assert len(set(names)) == 1

    release = threading.Event()
    workers.submit(release.wait, 10)  # holds its thread (a prediction cog has not answered)
    done.clear()
    workers.submit(record)
    assert done.wait(5)  # ran at once, on another thread
    release.set()
    workers.close()


def test_a_failing_task_is_logged_and_its_thread_lives_on(caplog) -> None:
    workers = Workers("t", idle_s=5)
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("a bug")

    workers.submit(boom)
    pause = threading.Event()
    for _ in range(100):
        if "a task failed" in caplog.text and workers.idle == 1:
            break
        pause.wait(0.05)
    assert "a task failed" in caplog.text
    workers.submit(done.set)  # on the thread that ran the failing task
    assert done.wait(5)
    workers.close()


def test_idle_threads_exit_after_idle_s() -> None:
    workers = Workers("idle", idle_s=0.1)
    ran = threading.Event()
    workers.submit(ran.set)
    assert ran.wait(5)
    deadline = threading.Event()
    for _ in range(100):
        if not [t for t in threading.enumerate() if t.name.startswith("idle-")] and workers.idle == 0:
            break
        deadline.wait(0.05)
    assert workers.idle == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("idle-")]
