"""Issue 13: `make up` with several API processes (COGPLANE_API_WORKERS, local/worker.py). Every
process serves the same API over the same state: predictions created in any of them run and end,
a create in a worker boots a cold pool and wakes a warm one, a stop refuses new work in all of them
while polls are served, a killed worker is replaced, and nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.system.conftest import REPO, Stack, alive, descendants, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.single_machine(
        "`make up`'s extra API processes on one listening socket; deployed, Lambda runs as many API instances "
        "as there are requests"
    ),
]

WORKERS = 3


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def api_pids(stack: Stack) -> list[int]:
    """The first process and its API workers (not the runners nor their cog servers)."""
    assert stack.proc is not None
    return [stack.proc.pid] + sorted(p for p in descendants(stack.proc.pid) if "-m local.worker" in _cmdline(p))


def connections(pid: int, port: int) -> int:
    """Established TCP connections to `port` held by process `pid` (its socket fds in /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def _examples(tmp: Path) -> Path:
    folder = tmp / "examples"
    folder.mkdir(exist_ok=True)
    if not (folder / "hello").exists():
        (folder / "hello").symlink_to(REPO / "examples" / "hello", target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def workers_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-workers")
    s = Stack(
        tmp / "home",
        examples=_examples(tmp),
        env={"COGPLANE_API_WORKERS": str(WORKERS), "COGPLANE_MAX_RUNNERS": "1"},
    ).start()
    try:
        yield s
    finally:
        left = s.stop()
        assert not left, f"processes left behind after Ctrl-C: {left}"


def _predict(stack: Stack, prompt: str) -> dict:
    with stack.client() as c:  # a new connection: the kernel gives it to any of the processes
        r = c.post(
            "/v1/models/examples/hello/predictions",
            json={"input": {"prompt": prompt}},
            headers={"Prefer": "wait=60"},
        )
        assert r.status_code in (200, 201), r.text
        return r.json()


def test_every_process_serves_the_same_api(workers_stack):
    pids = api_pids(workers_stack)
    assert len(pids) == WORKERS, f"{WORKERS} API processes expected: {[(p, _cmdline(p)) for p in pids]}"
    # connections open at once are spread over the processes by whoever accepts first
    clients = [workers_stack.client() for _ in range(30)]
    try:
        for c in clients:
            assert c.get("/v1/hardware").status_code == 200
        held = {pid: connections(pid, workers_stack.port) for pid in pids}
        assert sum(held.values()) == 30, held
        assert sum(1 for n in held.values() if n) >= 2, f"one process took every connection: {held}"
        # each connection (so several processes) creates, and reads back what the others created
        made = []
        for i, c in enumerate(clients):
            r = c.post("/v1/models/examples/hello/predictions", json={"input": {"prompt": f"p{i}"}})
            assert r.status_code == 201, r.text
            made.append(r.json()["id"])
        for i, pid in enumerate(made):
            c = clients[(i + 7) % len(clients)]
            body = wait_for(
                lambda c=c, pid=pid: (p := c.get(f"/v1/predictions/{pid}").json())["status"] == "succeeded" and p,
                timeout=120,
            )
            assert body["output"] == f"hello p{i}"
    finally:
        for c in clients:
            c.close()


def test_sync_predictions_through_every_process_end_at_once(workers_stack):
    """`Prefer: wait` answers with the end in whichever process the request reached: the runner's
    completion notice reaches every API process (no process waits out the safety re-read)."""
    for i in range(40):
        body = _predict(workers_stack, f"w{i}")
        assert body["status"] == "succeeded", body
        assert body["output"] == f"hello w{i}"


def test_a_killed_worker_is_replaced(workers_stack):
    before = api_pids(workers_stack)
    victim = before[-1]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), timeout=10)
    after = wait_for(lambda: (p := api_pids(workers_stack)) and len(p) == WORKERS and victim not in p and p, timeout=60)
    assert victim not in after
    for i in range(10):  # and the API still answers on every new connection
        assert _predict(workers_stack, f"k{i}")["output"] == f"hello k{i}"


def _client_on_a_worker(stack: Stack) -> httpx.Client:
    """A client whose connection a worker (not the first process) accepted."""
    assert stack.proc is not None
    for _ in range(100):
        c = stack.client()
        c.get("/v1/hardware")
        if not connections(stack.proc.pid, stack.port):
            return c
        c.close()
    raise AssertionError("the first process accepted 100 connections in a row")


def test_a_stop_refuses_new_work_in_every_process_and_drains(tmp_path, model_copy):
    """A create in a worker boots a cold pool (only the first process runs the dispatcher: the
    worker tells it); a stop then refuses new predictions in every process (503) while polls are
    served, the running prediction ends, and every process exits."""
    s = Stack(
        tmp_path / "home",
        examples=_examples(tmp_path),
        env={"COGPLANE_API_WORKERS": str(WORKERS), "COGPLANE_MAX_RUNNERS": "1", "COGPLANE_STOP_GRACE": "30"},
    ).start()
    try:
        folder = model_copy("sleeper")
        (folder / "nonce.txt").write_text(uuid.uuid4().hex)  # a pool of its own: it starts cold
        version = s.cli("push", str(folder), "local/sleepy").stdout.strip().rsplit(":", 1)[-1]
        with contextlib.closing(_client_on_a_worker(s)) as c:
            r = c.post("/v1/predictions", json={"version": version, "input": {"seconds": 6, "tag": "a"}})
            assert r.status_code == 201, r.text
            first = r.json()["id"]
            wait_for(lambda: c.get(f"/v1/predictions/{first}").json()["status"] == "processing", timeout=240)
        assert s.proc is not None
        s.proc.send_signal(signal.SIGINT)
        served = set()
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # new connections: each process in turn answers
            with s.client() as c:
                r = c.post("/v1/predictions", json={"version": version, "input": {"seconds": 1}})
                assert r.status_code == 503, (r.status_code, r.text)
                assert "shutting down" in r.json()["detail"]
                poll = c.get(f"/v1/predictions/{first}")
                assert poll.status_code == 200
                served.update(p for p in api_pids(s) if connections(p, s.port))
        assert len(served) >= 2, f"only {served} answered during the stop"
        assert s.proc.wait(timeout=90) == 0
        with httpx.Client(verify=s.verify) as plain, pytest.raises(httpx.ConnectError):
            plain.get(f"{s.url}/v1/hardware")  # the socket is gone with every process
    finally:
        left = s.stop()
        assert not left, f"processes left behind: {left}"
    final = s.prediction_record(first)
    assert final["status"] == "succeeded", final
