"""What the bench starts and stops: the single-machine stack, a direct cog server, /proc helpers.

Every server binds 127.0.0.1. Child processes get PR_SET_PDEATHSIG (they die with the bench even
if it is killed), are stopped by pid from a `finally`/`__exit__`, and their temp folders are removed.
Call `start()` from the main thread: the kernel ties PDEATHSIG to the thread that spawned the child.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
BANNER = "cogplane is up at"
TOKEN = "bench-token-" + "0123456789abcdef"


def default_env_cache() -> Path:
    """Where model environments are cached across bench runs (the same default `cogplane push` uses)."""
    return Path(os.environ.get("COGPLANE_ENV_CACHE") or Path.home() / ".cache" / "cogplane" / "envs")


def free_port() -> int:
    from gpu_runner.cog_server import free_port as _free_port

    return _free_port("127.0.0.1")


def _pdeathsig() -> Any:
    from cogplane.processes import pdeathsig_preexec

    return pdeathsig_preexec()


def parse_time(value: str) -> datetime:
    """RFC 3339 with up to 9 fractional digits (coglet writes nanoseconds) or a trailing Z."""
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, tz = rest[:digits], rest[digits:]
        text = f"{head}.{(frac + '000000')[:6]}{tz}"
    return datetime.fromisoformat(text)


# --- /proc -------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Live (non-zombie) children of `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat and stat[1] == pid and stat[0] != "Z":
            found.append(int(entry))
    return found


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its own threads, not its children), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat and stat[0] != "Z":
                parent_of[int(entry)] = stat[1]
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parent_of.items() if parent == current]
        found += kids
        frontier += kids
    return found


def process_env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


# --- the stack ---------------------------------------------------------------------------------
class _Started:
    """`with X(...) as x:` starts it and always stops it, also when starting fails half way."""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Stack(_Started):
    """`cogplane up` in a fresh COGPLANE_HOME (a temp folder) with a shared environment cache."""

    def __init__(
        self,
        *,
        env_cache: Path,
        max_runners: int = 2,
        idle_timeout: float = 300.0,
        examples: tuple[str, ...] = ("hello", "embeddings"),
        tls: bool | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`tls`: None leaves the stack's default (COGPLANE_TLS unset), False/True set it."""
        self.extra_env = dict(extra_env or {})
        self.env_cache = Path(env_cache)
        self.tls = tls
        self.base_url: str | None = None
        self.ca: Path | None = None
        self.max_runners = max_runners
        self.idle_timeout = idle_timeout
        self.examples = examples
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        """The URL the stack announced (https:// when it serves TLS with its local CA)."""
        return self.base_url or f"http://127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0]

    def client(self, timeout: float = 120.0) -> httpx.Client:
        verify: Any = True
        if self.scheme == "https" and self.ca is not None:
            verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(
            base_url=self.url, timeout=timeout, verify=verify, headers={"Authorization": f"Bearer {TOKEN}"}
        )

    def start(self, timeout: float = 180.0) -> Stack:
        self.root = Path(tempfile.mkdtemp(prefix="cogplane-bench-"))
        examples = self.root / "examples"
        examples.mkdir()
        for name in self.examples:
            (examples / name).symlink_to(EXAMPLES / name, target_is_directory=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("COGPLANE_")}
        env.update(
            {
                "PORT": str(self.port),
                "COGPLANE_HOME": str(self.root / "home"),
                "COGPLANE_TOKEN": TOKEN,
                "COGPLANE_EXAMPLES": str(examples),
                "COGPLANE_ENV_CACHE": str(self.env_cache),
                "COGPLANE_MAX_RUNNERS": str(self.max_runners),
                "COGPLANE_IDLE_TIMEOUT": str(self.idle_timeout),
                "PYTHONUNBUFFERED": "1",
                # the bench sends far more than an account may (600 creates a minute): the limiter
                # still runs (its cost is measured), it just never refuses
                "COGPLANE_RATE_CREATE_PER_MINUTE": "100000000",
                "COGPLANE_RATE_OTHER_PER_MINUTE": "100000000",
                **self.extra_env,
            }
        )
        if self.tls is not None:
            env["COGPLANE_TLS"] = "1" if self.tls else "0"
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from local.cli import main; sys.exit(main())", "up"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_pdeathsig(),
            )
        deadline = started + timeout
        while True:
            text = self.log_tail(20000)
            if BANNER in text:
                self.base_url = text.split(BANNER, 1)[1].split()[0].rstrip("/")
                ca = self.root / "home" / "tls" / "ca.pem"
                self.ca = ca if ca.is_file() else None
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"cogplane up exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cogplane up not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started
        return self

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "stack.log"

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 40.0) -> None:
        """SIGINT (the stack stops its runners), SIGKILL after `grace`; then remove the temp folder."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    # --- runners ----------------------------------------------------------------------------
    def api_pids(self) -> list[int]:
        """The API's processes: the first (uvicorn, dispatcher, pumps) and its workers (local/worker.py)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + [pid for pid in children(self.proc.pid) if "local.worker" in _cmdline(pid)]

    def runner_pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [pid for pid in children(self.proc.pid) if "gpu_runner" in _cmdline(pid)]

    def wait_no_runners(self, timeout: float) -> bool:
        """Until every runner has exited (idle timeout): the next prediction is a cold boot."""
        deadline = time.monotonic() + timeout
        while self.runner_pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        time.sleep(0.3)  # let the dispatcher reap it (its tick is 0.25 s)
        return True

    def wait_runners(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self.runner_pids()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.runner_pids())

    def cog_healths(self) -> list[dict]:
        """The /health-check bodies of the runners' cog servers, found through /proc."""
        found = []
        for runner in self.runner_pids():
            for pid in children(runner):
                if "cog.server.http" not in _cmdline(pid):
                    continue
                port = process_env(pid).get("PORT")
                if not port:
                    continue
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    found.append(httpx.get(f"http://127.0.0.1:{port}/health-check", timeout=2).json())
        return found

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds used so far by the API processes (uvicorn + dispatcher, workers), the runners, and the
        cog servers with their Python workers; plus this bench process (the clients)."""
        out = {"api": 0.0, "runners": 0.0, "cog": 0.0, "bench_clients": sum(os.times()[:2])}
        if self.proc is None or self.proc.poll() is not None:
            return out
        out["api"] = sum(_cpu_seconds(pid) for pid in self.api_pids())
        for runner in self.runner_pids():
            out["runners"] += _cpu_seconds(runner)
            out["cog"] += sum(_cpu_seconds(p) for p in descendants(runner))
        return out

    def serving_runners(self) -> int:
        return sum(1 for h in self.cog_healths() if h.get("status") in ("READY", "BUSY"))


# --- predictions through cogplane ----------------------------------------------------------------
class PredictionError(RuntimeError):
    pass


def predict_sync(client: httpx.Client, model: str, inputs: dict) -> tuple[float, dict]:
    """POST with `Prefer: wait`: (client-side latency in seconds, the prediction)."""
    t0 = time.perf_counter()
    response = client.post(f"/v1/models/{model}/predictions", json={"input": inputs}, headers={"Prefer": "wait"})
    elapsed = time.perf_counter() - t0
    if response.status_code not in (200, 201):
        raise PredictionError(f"{model}: HTTP {response.status_code}: {response.text[:500]}")
    body = response.json()
    if body.get("status") != "succeeded":
        raise PredictionError(f"{model}: {body.get('status')}: {body.get('error')}")
    return elapsed, body


def create_async(client: httpx.Client, model: str, inputs: dict) -> dict:
    response = client.post(f"/v1/models/{model}/predictions", json={"input": inputs})
    if response.status_code not in (200, 201):
        raise PredictionError(f"{model}: HTTP {response.status_code}: {response.text[:500]}")
    return response.json()


def get_prediction(client: httpx.Client, prediction_id: str) -> dict:
    response = client.get(f"/v1/predictions/{prediction_id}")
    response.raise_for_status()
    return response.json()


def wait_all(client: httpx.Client, ids: list[str], timeout: float, interval: float = 0.05) -> dict[str, dict]:
    """Poll until every prediction is terminal; returns them by id."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    pending = list(ids)
    while pending:
        still = []
        for prediction_id in pending:
            body = get_prediction(client, prediction_id)
            if body["status"] in TERMINAL:
                done[prediction_id] = body
            else:
                still.append(prediction_id)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise PredictionError(f"{len(pending)} predictions not done after {timeout} s")
            time.sleep(interval)
    return done


def latest_schema(client: httpx.Client, model: str) -> dict:
    response = client.get(f"/v1/models/{model}")
    response.raise_for_status()
    return (response.json().get("latest_version") or {}).get("openapi_schema") or {}


# --- a cog server of our own ---------------------------------------------------------------------
class DirectCog(_Started):
    """A real cog server for an example (a copy of its folder, with the schema cogplane generated)
    in the same cached environment the runners use. The reference for the warm path."""

    def __init__(self, example: str, env_cache: Path, schema: dict) -> None:
        self.example = example
        self.env_cache = Path(env_cache)
        self.schema = schema
        self.root: Path | None = None
        self.server: Any = None
        self.client: httpx.Client | None = None
        self.retries = 0
        self.hooks: ThreadingHTTPServer | None = None
        self._done: dict[str, threading.Event] = {}
        self._events: dict[str, list[str]] = {}

    def start(self, timeout: float = 120.0) -> DirectCog:
        from cogplane.environments import ensure_environment
        from gpu_runner.cog_server import CogServer, read_cog_config, write_schema

        self.root = Path(tempfile.mkdtemp(prefix="cogplane-bench-cog-"))
        model_dir = self.root / "model"
        shutil.copytree(EXAMPLES / self.example, model_dir, ignore=shutil.ignore_patterns(".cog", "__pycache__"))
        write_schema(model_dir, self.schema)
        config = read_cog_config(model_dir)
        env_dir = ensure_environment(config, model_dir, self.env_cache)
        self.server = CogServer(model_dir, env_dir, log_path=self.root / "cog.log", config=config)
        self.server.start()
        health = self.server.wait_ready(timeout=timeout, interval=0.01)
        if not health.serving:
            raise RuntimeError(f"direct cog server for {self.example} not ready: {health.status} {health.error}")
        self.client = httpx.Client(base_url=self.server.url, timeout=60)
        self._serve_webhooks()
        return self

    def _serve_webhooks(self) -> None:
        """A webhook receiver like the runner's (ThreadingHTTPServer, 200 first, then handle)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                data = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                prediction_id = self.path.rsplit("/", 1)[-1]
                try:
                    status = json.loads(data).get("status")
                except ValueError:
                    status = "?"
                owner._events.setdefault(prediction_id, []).append(status)
                if status in TERMINAL and prediction_id in owner._done:
                    owner._done[prediction_id].set()

        self.hooks = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.hooks.daemon_threads = True
        threading.Thread(target=self.hooks.serve_forever, name="bench-webhooks", daemon=True).start()

    def predict_async(self, inputs: dict, timeout: float = 30.0) -> tuple[float, list[str]]:
        """What the runner does: `PUT /predictions/{id}` with `Prefer: respond-async` and a webhook
        (a new connection each time, as gpu_runner/runner.py does), until the terminal webhook
        arrives. Returns (seconds, the statuses of the webhooks received)."""
        assert self.server is not None and self.hooks is not None
        prediction_id = uuid.uuid4().hex
        done = self._done[prediction_id] = threading.Event()
        hook = f"http://127.0.0.1:{self.hooks.server_address[1]}/webhook/{prediction_id}"
        body = json.dumps({"id": prediction_id, "input": inputs, "webhook": hook}).encode()
        t0 = time.perf_counter()
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
            conn.request(
                "PUT",
                f"/predictions/{prediction_id}",
                body=body,
                headers={"Content-Type": "application/json", "Prefer": "respond-async"},
            )
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != 409:
                break
            self.retries += 1
            time.sleep(0.001)
        if response.status not in (200, 202):
            raise PredictionError(f"cog: PUT answered {response.status}")
        if not done.wait(timeout):
            raise PredictionError("cog: no terminal webhook")
        elapsed = time.perf_counter() - t0
        self._done.pop(prediction_id, None)
        return elapsed, self._events.pop(prediction_id, [])

    def stop(self) -> None:
        try:
            if self.hooks is not None:
                self.hooks.shutdown()
                self.hooks.server_close()
            if self.client is not None:
                self.client.close()
            if self.server is not None:
                self.server.stop(grace=5)
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def predict(self, inputs: dict) -> tuple[float, dict]:
        """POST /predictions (sync); a 409 (the slot is freed just after the previous response, see
        docs/cog-contract.md §0.4) is retried after 1 ms and its time is included."""
        assert self.client is not None
        t0 = time.perf_counter()
        for _ in range(1000):
            response = self.client.post("/predictions", json={"input": inputs})
            if response.status_code != 409:
                break
            self.retries += 1
            time.sleep(0.001)
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            raise PredictionError(f"cog: HTTP {response.status_code}: {response.text[:500]}")
        body = response.json()
        if body.get("status") != "succeeded":
            raise PredictionError(f"cog: {body.get('status')}: {body.get('error')}")
        return elapsed, body
