"""Supervise one real cog server (`python -m cog.server.http`, coglet inside) for a model folder.

How it is started (see docs/cog-contract.md for why each point matters):
- `<env>/bin/python -m cog.server.http --host 127.0.0.1 [--upload-url URL]`, cwd = the model
  folder (coglet reads `.cog/openapi_schema.json` relative to the cwd: `write_schema`), PORT = a
  free port, `<env>/bin` first on PATH (coglet spawns its Python worker as a bare `python` looked
  up on PATH), COG_PREDICT_TYPE_STUB from cog.yaml `run`/`predict`, COG_MAX_CONCURRENCY from
  `concurrency.max` or else `@concurrent(max=N)` in the source (coglet reads neither at run time:
  cog's CLI bakes them in at build time; cogplane.cogconfig), COG_SETUP_TIMEOUT, and cog.yaml's
  `environment:` (what cog's image sets with ENV; platform names refused at push, see cogconfig).
- In its own session / process group (`start_new_session=True`). coglet's worker
  (`python -c "import coglet; coglet.server._run_worker()"`) is its child and stays in that
  group, so `stop()`/`kill()` signal the whole group and leave no orphan.
- With `die_with_parent` (the default, Linux only) the runner's death, even by SIGKILL, takes the
  server tree with it: the server gets PR_SET_PDEATHSIG=SIGKILL from a preexec_fn, and every Python
  process below it (coglet's worker, the model's own Python subprocesses) sets the same on itself
  from `pdeathsig/sitecustomize.py`, put on their PYTHONPATH. The second part is needed because
  coglet's worker, when its server dies, exits only once it is idle: a running prediction goes on
  to its end (observed with 0.23.1; an idle worker exits at once). tests/runner checks both.
  Caveat: the kernel sends the signal when the *thread* that started the server exits, so call
  `start()` from a thread that lives as long as the runner (the main thread, or an event loop's
  thread), not from a short-lived worker thread.
- The server's stdout and stderr (coglet's JSON log lines, the user's subprocess output) are
  appended to `log_path`.
- Only a small allowlist of the runner's environment variables is passed on (PATH, locale, TMPDIR,
  CUDA/NVIDIA, proxies, ...): model code is user code and must not see the runner's credentials.
- When the runner is root and the `model` user exists (the runner image, gpu_runner/Dockerfile),
  the server runs as that unprivileged user (`model_user()`): it cannot read the runner's
  /proc/<pid>/environ (the task role's credentials URI) and the image's entrypoint keeps it off
  the credential endpoints (169.254.170.2, 169.254.169.254). Elsewhere it runs as the runner does.

Readiness is decided by the JSON body of GET /health-check, which always answers HTTP 200:
STARTING, READY, BUSY, SETUP_FAILED, UNHEALTHY, DEFUNCT. A server in SETUP_FAILED or UNHEALTHY
never recovers (it keeps running and answers 503/409): restart it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from cogplane.cogconfig import effective_concurrency, parse_environment
from cogplane.processes import pdeathsig_preexec
from gpu_runner.cog_client import (  # noqa: F401 - the health statuses are part of this module's interface
    BUSY,
    DEFUNCT,
    EXITED,
    FAILED_STATUSES,
    READY,
    SERVING_STATUSES,
    SETUP_FAILED,
    STARTING,
    TIMEOUT,
    UNHEALTHY,
    CogClient,
    HealthResult,
)

SCHEMA_PATH = Path(".cog") / "openapi_schema.json"

_ENV_ALLOW = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "LD_LIBRARY_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RUST_LOG",
    "LOG_FORMAT",
}
_ENV_ALLOW_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "HF_", "COG_")
_ADDRESS_IN_USE = b"Address already in use"
_PORT_RETRIES = 3

_PDEATHSIG_SITE = Path(__file__).resolve().parent / "pdeathsig"  # holds a sitecustomize.py


def write_schema(model_dir: Path, schema: dict) -> Path:
    """Write `.cog/openapi_schema.json` (what `cog build` bundles) unless it already holds `schema`."""
    path = Path(model_dir) / SCHEMA_PATH
    data = json.dumps(schema, separators=(",", ":"), sort_keys=True)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()) == schema:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(data)
    os.replace(tmp, path)
    return path


def read_cog_config(model_dir: Path) -> dict:
    return yaml.safe_load((Path(model_dir) / "cog.yaml").read_text()) or {}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


MODEL_USER = "model"  # created in gpu_runner/Dockerfile


@dataclass(frozen=True)
class ModelUser:
    name: str
    uid: int
    gid: int
    home: str


def model_user() -> ModelUser | None:
    """The unprivileged account model code runs as: only when the runner is root and the account
    exists (the runner image). None elsewhere (`make up`, tests): cog runs as the runner's user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        import pwd

        entry = pwd.getpwnam(MODEL_USER)
    except (ImportError, KeyError):
        return None
    return ModelUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _give(path: Path, user: ModelUser, *, recursive: bool = False) -> None:
    os.chown(path, user.uid, user.gid)
    if recursive:
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


def group_pids(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in a process group (Linux: read from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            pids.append(int(entry))
    return pids


class CogServer:
    """One cog server process (and its worker) for one model folder and environment."""

    def __init__(
        self,
        model_dir: Path,
        env_dir: Path,
        *,
        concurrency: int | None = None,
        setup_timeout: float | None = None,
        upload_url: str | None = None,
        log_path: Path,
        config: dict | None = None,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        die_with_parent: bool = True,
        train: bool = False,
    ) -> None:
        """`concurrency` overrides cog.yaml `concurrency.max` (default 1); `config` is the parsed
        cog.yaml (read from model_dir if not given); `env` adds/overrides environment variables;
        `train` serves cog.yaml `train:` on /trainings (`--x-mode train`) instead of the predictor."""
        self.model_dir = Path(model_dir).resolve()
        self.env_dir = Path(env_dir).resolve()
        self.log_path = Path(log_path)
        self.config = config if config is not None else read_cog_config(self.model_dir)
        self.setup_timeout = setup_timeout
        self.upload_url = upload_url
        self.host = host
        self.extra_env = dict(env or {})
        self.die_with_parent = die_with_parent
        self.train = train
        self.concurrency = (
            concurrency if concurrency is not None else effective_concurrency(self.config, self.model_dir)
        )
        self.predict_ref = self.config.get("run") or self.config.get("predict")
        if not self.predict_ref:
            raise ValueError("cog.yaml has neither `run` nor `predict`")
        self.port: int | None = None
        self.started_at: float | None = None
        self._proc: subprocess.Popen | None = None
        self._log_offset = 0
        self._follow_offset = 0  # follow_logs() has read the log up to here
        self._lock = threading.Lock()

    # -- process -------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("cog server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        cmd = [str(self.env_dir / "bin" / "python"), "-m", "cog.server.http", "--host", self.host]
        if self.upload_url:
            cmd += ["--upload-url", self.upload_url]
        if self.train:
            cmd += ["--x-mode", "train"]
        return cmd

    def environment(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _ENV_ALLOW or k.startswith(_ENV_ALLOW_PREFIXES)}
        user = model_user()
        if user is not None:
            env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
        env.update(parse_environment(self.config))  # cog.yaml `environment:` (the platform's own win below)
        env.update(self.extra_env)
        env["PATH"] = os.pathsep.join([str(self.env_dir / "bin"), env.get("PATH") or os.defpath])
        env["VIRTUAL_ENV"] = str(self.env_dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)
        env.pop("PYTHONPATH", None)
        if self.die_with_parent and sys.platform.startswith("linux"):
            env["PYTHONPATH"] = str(_PDEATHSIG_SITE)
            env["COGPLANE_PDEATHSIG_PARENT"] = str(os.getpid())
        env["PORT"] = str(port)
        env["COG_PREDICT_TYPE_STUB"] = str(self.predict_ref)
        if self.config.get("train"):
            env["COG_TRAIN_TYPE_STUB"] = str(self.config["train"])
        env["COG_MAX_CONCURRENCY"] = str(max(1, int(self.concurrency)))
        if self.setup_timeout:
            # coglet reads whole seconds; 0 would mean "no timeout", so round up
            env["COG_SETUP_TIMEOUT"] = str(max(1, int(-(-self.setup_timeout // 1))))
        else:
            env.pop("COG_SETUP_TIMEOUT", None)
        return env

    def start(self) -> CogServer:
        with self._lock:
            if self.alive():
                raise RuntimeError(f"cog server already running (pid {self.pid})")
            self._spawn()
        return self

    def _spawn(self) -> None:
        self.port = free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._follow_offset = self._log_offset
        env = self.environment(self.port)
        user = model_user()
        uid = gid = None
        if user is not None:  # the model's own folder and caches are its to write; the env stays root's
            _give(self.model_dir, user, recursive=True)
            for key in ("HF_HOME",):
                if env.get(key):
                    Path(env[key]).mkdir(parents=True, exist_ok=True)
                    _give(Path(env[key]), user)
            uid, gid = user.uid, user.gid
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - argv list (no shell) built by command()
                self.command(),
                cwd=self.model_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pdeathsig_preexec() if self.die_with_parent else None,
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
        self.started_at = time.monotonic()

    # -- health --------------------------------------------------------------------------------

    def health(self, timeout: float = 1.0) -> HealthResult:
        """One GET /health-check. A process that has exited reports EXITED (with its log's tail)."""
        if self._proc is None or self.port is None:
            return HealthResult(EXITED, error="cog server not started")
        if self._proc.poll() is not None:
            return HealthResult(EXITED, error=self._exit_message())
        result = self.client().health(timeout=timeout)
        if not result.body and self._proc.poll() is not None:  # no answer: it died meanwhile
            return HealthResult(EXITED, error=self._exit_message())
        return result

    def client(self, route: str | None = None) -> CogClient:
        """A client of this server (its port changes when it is restarted on another one);
        `route` defaults to what the server serves: /trainings in train mode, else /predictions."""
        if self.port is None:
            raise RuntimeError("cog server not started")
        return CogClient(self.host, self.port, route or ("trainings" if self.train else "predictions"))

    def wait_ready(self, timeout: float | None = None, interval: float = 0.05) -> HealthResult:
        """Poll health until READY/BUSY or a failed state (SETUP_FAILED, UNHEALTHY, DEFUNCT, EXITED).

        Returns TIMEOUT (with the last status's logs) if `timeout` seconds pass first. If the port
        was taken between choosing it and coglet binding it, the server is restarted on another.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        retries = _PORT_RETRIES
        while True:
            result = self.health(timeout=max(0.25, interval))
            if result.status == EXITED and retries > 0 and self._address_in_use():
                retries -= 1
                with self._lock:
                    self._spawn()
                continue
            if result.serving or result.failed:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                return HealthResult(
                    TIMEOUT,
                    setup_logs=result.setup_logs,
                    error=f"cog server not ready after {timeout} s (last status {result.status})",
                    body=result.body,
                )
            time.sleep(interval)

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL whatever is left after `grace` seconds. Returns the exit code.

        coglet drops in-flight predictions on SIGTERM without a terminal webhook: the caller must
        record their outcome itself.
        """
        if self._proc is None:
            return None
        self._signal_group(signal.SIGTERM)
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the whole process group (server and worker) and reap the server."""
        if self._proc is None:
            return None
        self._signal_group(signal.SIGKILL)
        return self._proc.wait()

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            raise RuntimeError("the cog server was never started")
        if self._proc.returncode is not None and not group_pids(self._proc.pid):
            return  # the server was reaped and its group is empty: the id may belong to someone else now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)  # the group id is the server's pid (start_new_session)

    def group_pids(self) -> list[int]:
        """The live processes of the server's group: the server and coglet's worker."""
        return group_pids(self._proc.pid) if self._proc else []

    def __enter__(self) -> CogServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs ----------------------------------------------------------------------------------

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of what this server (since its last start) wrote to its log."""
        try:
            with open(self.log_path, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset, size - max_bytes))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def setup_output(self) -> str:
        """What the model printed while it was loaded and set up (since the server's last start),
        read from coglet's JSON log lines (target `coglet::setup`); on a setup failure this holds
        the model's traceback (see pdeathsig/sitecustomize.py), which the health body does not."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                raw = log.read().decode(errors="replace")
        except OSError:
            return ""
        lines = []
        for line in raw.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("target") == "coglet::setup":
                message = (record.get("fields") or {}).get("message")
                if isinstance(message, str) and not _is_cog_noise(message):
                    lines.append(message)
        return "\n".join(lines)

    def prediction_logs(self, prediction_id: str, max_bytes: int = 16 << 20) -> str:
        """A prediction's lines as its completed webhook carries them, read from coglet's JSON log
        lines in the last `max_bytes` of this server's log: cog's sync answer of a failed or
        canceled prediction has none."""
        needle = json.dumps(prediction_id)
        lines = []
        for line in self.log_tail(max_bytes).splitlines():
            if needle in line and (found := prediction_line(line)) and found[0] == prediction_id:
                lines.append(found[1])
        return "".join(lines)

    def follow_logs(self, max_bytes: int = 8 << 20) -> dict[str, str]:
        """The lines each prediction printed since the last call (by prediction id), read on from
        where the last call stopped (at most `max_bytes` a call; a partial last line waits)."""
        with self._lock:
            try:
                with open(self.log_path, "rb") as log:
                    log.seek(self._follow_offset)
                    raw = log.read(max_bytes)
            except OSError:
                return {}
            end = raw.rfind(b"\n")
            if end < 0:
                return {}
            self._follow_offset += end + 1
        found: dict[str, list[str]] = {}
        for line in raw[:end].decode(errors="replace").splitlines():
            if '"source"' in line and (parsed := prediction_line(line)):
                found.setdefault(parsed[0], []).append(parsed[1])
        return {prediction_id: "".join(lines) for prediction_id, lines in found.items()}

    def _address_in_use(self) -> bool:
        return _ADDRESS_IN_USE in self.log_tail().encode()

    def _exit_message(self) -> str:
        code = self._proc.poll() if self._proc else None
        tail = self.log_tail(2000).strip()
        return f"cog server exited with code {code}" + (f": {tail}" if tail else "")


# cog's own deprecation warnings about the model's API, printed at load with a bogus location
_COG_NOISE = re.compile(r"^<string>:\d+: DeprecationWarning: ")
# coglet's prefixes around a setup error: "worker setup failed: worker setup failed (slot <uuid>):
# Setup failed: setup failed: RuntimeError: msg"
_SETUP_PREFIX = re.compile(r"^(?:(?:worker setup failed(?: \(slot [^)]*\))?|setup failed)\s*:\s*)+", re.IGNORECASE)


def prediction_line(line: str) -> tuple[str, str] | None:
    """(prediction id, the line with its newline) for one of coglet's JSON log lines that carries
    what a prediction printed (`fields.source` Stdout or Stderr), else None."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    fields = record.get("fields") if isinstance(record, dict) else None
    if not isinstance(fields, dict) or fields.get("source") not in ("Stdout", "Stderr"):
        return None
    prediction_id, message = fields.get("prediction_id"), fields.get("message")
    if not isinstance(prediction_id, str) or not isinstance(message, str):
        return None
    return prediction_id, message + "\n"


def _is_cog_noise(message: str) -> bool:
    return bool(_COG_NOISE.match(message))


def model_setup_lines(setup_logs: str) -> str:
    """The model's own lines in a health body's `setup.logs` (coglet prefixes them
    `[coglet::setup] `; the rest is coglet's own chatter)."""
    prefix = "[coglet::setup] "
    lines = [line[len(prefix) :] for line in (setup_logs or "").splitlines() if line.startswith(prefix)]
    return "\n".join(line for line in lines if not _is_cog_noise(line))


def clean_setup_error(error: str | None) -> str:
    """coglet's setup error without its internal prefixes and slot id: "RuntimeError: msg"."""
    text = (error or "").strip()
    return _SETUP_PREFIX.sub("", text).strip() or text or "setup failed"
