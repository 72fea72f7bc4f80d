"""gpu_runner.cog_server against the real cog server (cog 0.23.1 / coglet) in a real environment."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cogplane.schema import generate_schema
from gpu_runner import cog_server as cog_server_module
from gpu_runner.cog_server import (
    EXITED,
    READY,
    SETUP_FAILED,
    TIMEOUT,
    UNHEALTHY,
    CogServer,
    clean_setup_error,
    model_setup_lines,
    write_schema,
)
from tests.runner.conftest import MODELS, REPO, wait_until


def running(pid: int) -> bool:
    """True if `pid` is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def model(tmp_path: Path) -> Callable[[str], Path]:
    """A copy of a model folder with its `.cog/openapi_schema.json`, as the runner unpacks it."""

    copies = 0

    def make(name: str) -> Path:
        nonlocal copies
        copies += 1
        target = tmp_path / "models" / f"{name}-{copies}"
        shutil.copytree(MODELS[name], target)
        write_schema(target, generate_schema(target))
        return target

    return make


@pytest.fixture
def start(base_env: Path, tmp_path: Path) -> Iterator[Callable[..., CogServer]]:
    """Start cog servers; every one is stopped, and checked to leave no process, at teardown."""
    servers: list[CogServer] = []
    pids: set[int] = set()

    def launch(model_dir: Path, **kwargs: object) -> CogServer:
        kwargs.setdefault("log_path", tmp_path / f"cog-{len(servers)}.log")
        server = CogServer(model_dir, base_env, **kwargs)
        servers.append(server)
        server.start()
        pids.add(server.pid)
        return server

    launch.pids = pids  # type: ignore[attr-defined]
    try:
        yield launch
    finally:
        for server in servers:
            pids.update(server.group_pids())
            server.kill()
        assert wait_until(lambda: not any(running(pid) for pid in pids), 5), [p for p in pids if running(p)]


class Webhooks:
    """A tiny HTTP server that records the JSON bodies cog POSTs to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.changed = threading.Condition()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with hooks.changed:
                    hooks.bodies.append(body)
                    hooks.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for body in self.bodies:
                    if predicate(body):
                        return body
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching webhook in {timeout} s: {self.bodies}")
                self.changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    hooks = Webhooks()
    try:
        yield hooks
    finally:
        hooks.close()


def request(server: CogServer, method: str, path: str, body: dict | None = None, **headers: str):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json", **headers},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


# -- tests ----------------------------------------------------------------------------------------


def test_hello_boots_ready_and_answers_async_with_webhooks(model, start, webhooks: Webhooks) -> None:
    hello = model("hello")
    started = time.monotonic()
    server = start(hello)
    health = server.wait_ready(timeout=30)
    boot = time.monotonic() - started
    assert health.status == READY and health.serving and not health.failed
    assert "Server ready" in health.setup_logs
    assert "No schema file" not in health.setup_logs  # write_schema put it where coglet looks
    assert server.url == f"http://127.0.0.1:{server.port}"
    print(f"hello cold boot to READY: {boot * 1000:.0f} ms")

    status, body = request(
        server,
        "PUT",
        "/predictions/pred-async-1",
        {"id": "pred-async-1", "input": {"prompt": "world"}, "webhook": webhooks.url},
        Prefer="respond-async",
    )
    assert status == 202 and body["status"] == "starting"
    done = webhooks.wait_for(lambda b: b.get("status") == "succeeded")
    assert done["id"] == "pred-async-1"
    assert done["output"] == "hello world"
    assert "predict_time" in done["metrics"]


def test_schema_file_validates_inputs(model, start) -> None:
    server = start(model("hello"))
    assert server.wait_ready(timeout=30).status == READY
    status, body = request(server, "POST", "/predictions", {"input": {}})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "input", "prompt"]


def test_setup_failure_is_reported_with_the_error(model, start) -> None:
    server = start(model("setup_fails"))
    health = server.wait_ready(timeout=30)
    assert health.status == SETUP_FAILED and health.failed
    assert "setup exploded on purpose" in (health.error or "")
    assert server.alive()  # coglet stays up in SETUP_FAILED: the runner must stop it
    # The server log has the failure. (setup()'s own prints are racy in cog 0.23.1: when setup raises
    # right after printing they are often missing from the log and from health's setup.logs alike.)
    assert "setup exploded on purpose" in server.log_tail()


def test_a_failed_setup_leaves_the_models_output_and_traceback_once_in_setup_output(model, start) -> None:
    """Issue 10: coglet's health body has only "worker setup failed (slot <uuid>): ...";
    pdeathsig/sitecustomize.py prints the traceback, which setup_output() reads from the log."""
    server = start(model("setup_fails"))
    health = server.wait_ready(timeout=30)
    assert health.status == SETUP_FAILED
    assert clean_setup_error(health.error) == "RuntimeError: setup exploded on purpose"
    server.stop(grace=2)
    output = server.setup_output()
    assert output.count("Traceback (most recent call last):") == 1, output
    assert output.count("RuntimeError: setup exploded on purpose") == 1, output
    assert 'raise RuntimeError("setup exploded on purpose")' in output
    assert "loading weights that are not there" in output and "a stderr line from setup" in output
    assert "coglet" not in output and "slot" not in output and "sitecustomize" not in output
    assert "DeprecationWarning" not in output


def test_setup_output_helpers() -> None:
    assert (
        clean_setup_error(
            "worker setup failed: worker setup failed (slot 0b5c2a1e-4c1d-4f0e-9a57-"
            "2f1f7e0c9d11): Setup failed: setup failed: ValueError: bad"
        )
        == "ValueError: bad"
    )
    assert clean_setup_error("ValueError: setup failed: x") == "ValueError: setup failed: x"
    assert clean_setup_error(None) == "setup failed"
    logs = (
        "[coglet] Spawning worker subprocess\n[coglet::setup] <string>:1: DeprecationWarning: old\n"
        "[coglet::setup] loading\n[coglet::worker_bridge] Setup complete\n[coglet::setup] done\n"
    )
    assert model_setup_lines(logs) == "loading\ndone"


def test_worker_crash_makes_the_server_unhealthy(model, start) -> None:
    server = start(model("crash"))
    assert server.wait_ready(timeout=30).status == READY
    status, body = request(server, "POST", "/predictions", {"input": {"code": 3}})
    assert status == 200 and body["status"] == "failed"
    assert "Worker crashed" in body["error"]
    assert wait_until(lambda: server.health().status == UNHEALTHY, 10)
    health = server.health()
    assert health.failed and health.error
    assert server.wait_ready(timeout=5).status == UNHEALTHY  # a failed state ends the wait at once


def test_setup_timeout_fails_setup(model, start) -> None:
    server = start(model("slow"), setup_timeout=1, env={"SETUP_SLEEP": "20"})
    health = server.wait_ready(timeout=15)
    assert health.status == SETUP_FAILED
    assert "timed out" in (health.error or "")


def test_wait_ready_times_out_while_setup_runs(model, start) -> None:
    server = start(model("slow"), env={"SETUP_SLEEP": "20"})
    health = server.wait_ready(timeout=0.5)
    assert health.status == TIMEOUT
    assert "STARTING" in (health.error or "")
    assert server.health().status == "STARTING"


def test_stop_and_kill_leave_no_process(model, start) -> None:
    server = start(model("slow"))
    assert server.wait_ready(timeout=30).status == READY
    pids = server.group_pids()
    assert len(pids) == 2 and server.pid in pids  # the server and coglet's Python worker, one group
    # a prediction in flight: SIGTERM drops it, the group goes away
    status, _ = request(server, "PUT", "/predictions/busy", {"input": {"seconds": 30}}, Prefer="respond-async")
    assert status == 202
    server.stop(grace=5)
    assert wait_until(lambda: not any(running(pid) for pid in pids), 5)
    assert server.health().status == EXITED

    server = start(model("slow"))
    assert server.wait_ready(timeout=30).status == READY
    pids = server.group_pids()
    server.kill()
    assert wait_until(lambda: not any(running(pid) for pid in pids), 5)


def test_no_orphans_when_the_runner_is_sigkilled(model, base_env: Path, tmp_path: Path) -> None:
    """Runner → cog server → worker, with a prediction running: SIGKILL the runner, all of it goes."""
    slow = model("slow")
    script = tmp_path / "runner.py"
    script.write_text(
        textwrap.dedent(
            """
            import http.client, json, sys, time
            from pathlib import Path
            repo, model_dir, env_dir, log = sys.argv[1:]
            sys.path.insert(0, repo)
            from gpu_runner.cog_server import CogServer
            server = CogServer(Path(model_dir), Path(env_dir), log_path=Path(log))
            server.start()
            assert server.wait_ready(30).status == "READY"
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            conn.request("PUT", "/predictions/long", body=json.dumps({"input": {"seconds": 60}}),
                         headers={"Content-Type": "application/json", "Prefer": "respond-async"})
            assert conn.getresponse().status == 202
            time.sleep(0.3)
            print(json.dumps(server.group_pids()), flush=True)
            time.sleep(120)
            """
        )
    )
    args = [str(REPO), str(slow), str(base_env), str(tmp_path / "runner-cog.log")]
    runner = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        pids = json.loads(runner.stdout.readline())
        assert len(pids) == 2 and all(running(pid) for pid in pids)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        assert wait_until(lambda: not any(running(pid) for pid in pids), 5), [p for p in pids if running(p)]
    finally:
        runner.kill()
        runner.wait()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_worker_keeps_running_a_prediction_after_its_server_dies_without_the_hook(model, start) -> None:
    """The coglet behaviour that makes the sitecustomize hook necessary (documents cog 0.23.1)."""
    server = start(model("slow"), die_with_parent=False)
    assert server.wait_ready(timeout=30).status == READY
    worker = next(pid for pid in server.group_pids() if pid != server.pid)
    status, _ = request(server, "PUT", "/predictions/long", {"input": {"seconds": 30}}, Prefer="respond-async")
    assert status == 202
    time.sleep(0.3)
    os.kill(server.pid, signal.SIGKILL)  # the server alone, not its group
    time.sleep(1.0)
    assert running(worker)  # orphaned, still predicting; the fixture's group kill cleans it up


def test_port_taken_before_coglet_binds_is_retried(model, start, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1]]
    real_free_port = cog_server_module.free_port
    monkeypatch.setattr(cog_server_module, "free_port", lambda host: ports.pop() if ports else real_free_port(host))
    try:
        server = start(model("hello"))
        assert server.wait_ready(timeout=30).status == READY
        assert server.port != taken.getsockname()[1]
    finally:
        taken.close()


def test_environment_of_the_server(tmp_path: Path, base_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "runner-secret")
    # what an ECS task's runner has: the task role's credentials endpoint and the platform's settings
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/secret-guid")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "token")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "runner-session-token")
    monkeypatch.setenv("COGPLANE_SIGNING_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:k")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "cog.yaml").write_text('run: "predict.py:Runner"\ntrain: "train.py:train"\nconcurrency:\n  max: 4\n')
    server = CogServer(model_dir, base_env, log_path=tmp_path / "log", setup_timeout=2.5, env={"EXTRA": "1"})
    env = server.environment(5123)
    leaked = [k for k in env if k.startswith(("AWS_", "COGPLANE_")) and k != "COGPLANE_PDEATHSIG_PARENT"]
    assert not leaked, leaked  # (the parent's pid, for the death signal, is all of the platform it gets)
    assert cog_server_module.model_user() is None  # no `model` account here: cog runs as the runner does
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["EXTRA"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == str(base_env / "bin")
    assert env["PORT"] == "5123"
    assert env["COG_PREDICT_TYPE_STUB"] == "predict.py:Runner"
    assert env["COG_TRAIN_TYPE_STUB"] == "train.py:train"
    assert env["COG_MAX_CONCURRENCY"] == "4"
    assert env["COG_SETUP_TIMEOUT"] == "3"
    assert server.command()[1:] == ["-m", "cog.server.http", "--host", "127.0.0.1"]
    assert CogServer(model_dir, base_env, log_path=tmp_path / "log", upload_url="http://x/up/").command()[-2:] == [
        "--upload-url",
        "http://x/up/",
    ]


def test_write_schema_only_rewrites_on_change(tmp_path: Path) -> None:
    path = write_schema(tmp_path, {"openapi": "3.0.2"})
    assert path == tmp_path / ".cog" / "openapi_schema.json"
    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    write_schema(tmp_path, {"openapi": "3.0.2"})
    assert path.stat().st_mtime_ns == mtime
    write_schema(tmp_path, {"openapi": "3.1.0"})
    assert json.loads(path.read_text()) == {"openapi": "3.1.0"}


def test_train_mode_serves_the_train_entry(tmp_path: Path, base_env: Path) -> None:
    """A training pool's server: cog's `--x-mode train` (it then serves COG_TRAIN_TYPE_STUB on
    /trainings); a trained version's server gets COG_WEIGHTS for `setup(self, weights)`."""
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "cog.yaml").write_text('predict: "predict.py:Predictor"\ntrain: "train.py:train"\n')
    server = CogServer(model_dir, base_env, log_path=tmp_path / "log", train=True)
    assert server.command()[-2:] == ["--x-mode", "train"]
    assert "--x-mode" not in CogServer(model_dir, base_env, log_path=tmp_path / "log").command()
    weighted = CogServer(model_dir, base_env, log_path=tmp_path / "log", env={"COG_WEIGHTS": "/w/weights.txt"})
    assert weighted.environment(5000)["COG_WEIGHTS"] == "/w/weights.txt"
