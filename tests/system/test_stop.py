"""Issue 10, graceful stop: SIGTERM and SIGINT to a real `make up` / `cogplane up` with predictions
in flight on a real slow cog model. Each prediction ends `succeeded` or `failed` with a reason
(a queued one runs after the restart), new work is refused with 503 while stopping, and no
process of the tree is left."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid

import pytest

from tests.system.conftest import REPO, Stack, alive, descendants, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.single_machine(
        "the graceful stop of the `make up` / `cogplane up` process tree (SIGTERM, Ctrl-C, kill -9 of the "
        "stack, its start-up token check); the deployed shape has no such process"
    ),
]

GRACE = 12


class MakeUp(Stack):
    """`make up` in a session of its own (as a terminal would run it), so the test can signal the
    whole process group the way a service manager or `kill -TERM -PGID` does."""

    def start(self, timeout: float = 120) -> Stack:
        self.offset = self.output.stat().st_size if self.output.exists() else 0
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                ["make", "-s", "up"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self._wait_up(timeout)

    def _wait_up(self, timeout: float) -> Stack:
        wait_for(lambda: "cogplane is up at" in self.log() or self.proc.poll() is not None, timeout=timeout)
        assert self.proc.poll() is None, self.log()
        return self


def _stack(tmp_path, cls=Stack, **env) -> Stack:
    examples = tmp_path / "no-examples"
    examples.mkdir(exist_ok=True)
    return cls(
        tmp_path / "home",
        examples=examples,
        env={"COGPLANE_STOP_GRACE": str(GRACE), "COGPLANE_MAX_RUNNERS": "2", **env},
    )


def _push_sleeper(stack: Stack, model_copy, name: str) -> str:
    folder = model_copy("sleeper")
    (folder / "nonce.txt").write_text(uuid.uuid4().hex)  # a pool of its own: it starts cold
    return stack.cli("push", str(folder), f"local/{name}").stdout.strip()


def _processing_with_ticks(c, pid: str) -> None:
    wait_for(
        lambda: (
            (p := c.get(f"/v1/predictions/{pid}").json())["status"] == "processing" and "tick 0" in (p["logs"] or "")
        ),
        timeout=180,
    )


def _in_flight(stack: Stack, version: str) -> dict[str, str]:
    """long: outlasts the grace period; short: finishes inside it; queued: every runner is busy."""
    with stack.client() as c:
        ids = {
            "long": c.post(
                "/v1/predictions", json={"version": version, "input": {"seconds": 600, "tag": "long"}}
            ).json()["id"]
        }
        _processing_with_ticks(c, ids["long"])
        ids["short"] = c.post(
            "/v1/predictions", json={"version": version, "input": {"seconds": 5, "tag": "short"}}
        ).json()["id"]
        _processing_with_ticks(c, ids["short"])
        ids["queued"] = c.post(
            "/v1/predictions", json={"version": version, "input": {"seconds": 0, "tag": "queued"}}
        ).json()["id"]
    return ids


def _rows(stack: Stack) -> dict[str, dict]:
    db = sqlite3.connect(stack.home / "cogplane.db", timeout=30)
    try:
        return {row[0]: json.loads(row[1]) for row in db.execute("SELECT id, data FROM predictions")}
    finally:
        db.close()


def _wait_gone(stack: Stack, below: list[int], timeout: float = GRACE + 60) -> None:
    stack.proc.wait(timeout=timeout)
    try:
        wait_for(lambda: not any(alive(p) for p in below), timeout=10)
    finally:
        left = [p for p in below if alive(p)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


def _refused_while_stopping(stack: Stack, version: str) -> None:
    with stack.client() as c:
        r = c.post("/v1/predictions", json={"version": version, "input": {"seconds": 0}})
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "shutting down" in r.json()["detail"]


def _check_graceful(stack: Stack, ids: dict[str, str]) -> None:
    rows = _rows(stack)
    assert rows[ids["short"]]["status"] == "succeeded", rows[ids["short"]]
    assert rows[ids["short"]]["output"] == "slept 5 short"
    long = rows[ids["long"]]
    assert long["status"] == "failed", long
    assert long["error"].startswith("stopped: cogplane was shut down before this prediction finished"), long
    assert rows[ids["queued"]]["status"] == "starting", "a queued prediction waits for the next start"
    # nothing else left running or half-done: every prediction is terminal or queued
    assert all(p["status"] in ("succeeded", "failed", "starting") for p in rows.values()), rows
    again = Stack(stack.home, examples=stack.examples, env=stack.extra_env).start()
    try:
        with again.client() as c:
            done = wait_for(
                lambda: (p := c.get(f"/v1/predictions/{ids['queued']}").json())["status"] == "succeeded" and p,
                timeout=180,
            )
            assert done["output"] == "slept 0 queued"
            assert c.get(f"/v1/predictions/{ids['long']}").json()["status"] == "failed"
    finally:
        assert again.stop() == []


@pytest.mark.slow
def test_sigterm_to_make_up_lets_in_flight_work_finish_then_fails_the_rest_and_leaves_nothing(tmp_path, model_copy):
    stack = _stack(tmp_path, MakeUp).start()
    try:
        version = _push_sleeper(stack, model_copy, "sleeper-term")
        ids = _in_flight(stack, version)
        below = descendants(stack.proc.pid)
        assert len([p for p in below if alive(p)]) >= 4, "make, cogplane, two runners, their cog servers"
        os.killpg(stack.proc.pid, signal.SIGTERM)  # the whole group: make and cogplane
        wait_for(lambda: "Stopping (Ctrl-C again to stop at once)" in stack.log(), timeout=30)
        _refused_while_stopping(stack, version)
        _wait_gone(stack, below)
    finally:
        if stack.proc.poll() is None:
            os.killpg(stack.proc.pid, signal.SIGKILL)
    assert "Traceback" not in stack.log(), stack.log()
    _check_graceful(stack, ids)


@pytest.mark.slow
def test_ctrl_c_lets_in_flight_work_finish_then_fails_the_rest(tmp_path, model_copy):
    stack = _stack(tmp_path).start()
    try:
        version = _push_sleeper(stack, model_copy, "sleeper-int")
        ids = _in_flight(stack, version)
        below = descendants(stack.proc.pid)
        stack.proc.send_signal(signal.SIGINT)
        wait_for(lambda: "Stopping (Ctrl-C again to stop at once)" in stack.log(), timeout=30)
        _refused_while_stopping(stack, version)
        _wait_gone(stack, below)
    finally:
        stack.stop()
    assert stack.proc.returncode == 0, stack.log()
    assert "Traceback" not in stack.log() and "exit code -9" not in json.dumps(_rows(stack))
    _check_graceful(stack, ids)


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_fails_in_flight_work_with_a_reason(tmp_path, model_copy):
    stack = _stack(tmp_path, COGPLANE_STOP_GRACE="300").start()
    try:
        version = _push_sleeper(stack, model_copy, "sleeper-twice")
        with stack.client() as c:
            running = c.post("/v1/predictions", json={"version": version, "input": {"seconds": 600}}).json()["id"]
            _processing_with_ticks(c, running)
        below = descendants(stack.proc.pid)
        stack.proc.send_signal(signal.SIGINT)
        wait_for(lambda: "Stopping (Ctrl-C again to stop at once)" in stack.log(), timeout=30)
        time.sleep(1.5)  # a second Ctrl-C, not the echo of the first (see local.stack.Stopper)
        stack.proc.send_signal(signal.SIGINT)
        _wait_gone(stack, below, timeout=60)  # not the 300 s grace
    finally:
        stack.stop()
    failed = _rows(stack)[running]
    assert failed["status"] == "failed", failed
    assert failed["error"].startswith("stopped: cogplane was stopped at once"), failed
    assert "Stopping at once" in stack.log() and "Traceback" not in stack.log()


def test_a_short_token_is_a_one_line_error(tmp_path):
    env = {**_stack(tmp_path).env, "COGPLANE_TOKEN": "too-short"}
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "cogplane"), "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "COGPLANE_TOKEN must be at least 16 characters" in lines[0], result.stderr


@pytest.mark.slow
def test_after_a_kill_9_of_the_stack_the_next_start_fails_what_ran_and_runs_what_was_queued(tmp_path, model_copy):
    """The one stop that cannot clean up: the next start does it at once (not after a lease or a
    missed-heartbeat timeout), and the runners died with the stack (PR_SET_PDEATHSIG)."""
    stack = _stack(tmp_path, COGPLANE_MAX_RUNNERS="1").start()
    try:
        version = _push_sleeper(stack, model_copy, "sleeper-kill")
        with stack.client() as c:
            running = c.post("/v1/predictions", json={"version": version, "input": {"seconds": 600}}).json()["id"]
            _processing_with_ticks(c, running)
            queued = c.post(
                "/v1/predictions", json={"version": version, "input": {"seconds": 0, "tag": "after"}}
            ).json()["id"]
        below = descendants(stack.proc.pid)
        stack.proc.kill()
        _wait_gone(stack, below, timeout=30)
    finally:
        stack.stop()
    assert _rows(stack)[running]["status"] == "processing"  # nobody could say otherwise meanwhile
    again = Stack(stack.home, examples=stack.examples, env=stack.extra_env).start()
    try:
        with again.client() as c:
            failed = c.get(f"/v1/predictions/{running}").json()  # failed before the server answered
            assert failed["status"] == "failed" and failed["error"].startswith("stopped: cogplane ended"), failed
            done = wait_for(
                lambda: (
                    (p := c.get(f"/v1/predictions/{queued}").json())["status"] not in ("starting", "processing") and p
                ),
                timeout=180,
            )
            assert done["status"] == "succeeded" and done["output"] == "slept 0 after", done
    finally:
        assert again.stop() == []
