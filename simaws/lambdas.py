"""Lambda functions as local processes: each execution environment is one Python 3.12 process
(simaws/bootstrap.py) holding only the function's code asset and the runtime's packages on its
path. Environments are reused warm and created on demand up to the concurrency limit; an
invocation that runs past the function's timeout kills its environment, as Lambda does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("simaws.lambda")

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invoke: request and response
DEFAULT_CONCURRENCY = 16  # per function here (the account's 1000 would only exhaust this machine)
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")


class InvokeError(Exception):
    """The invocation failed outside the function's code (Lambda's own errors)."""

    def __init__(self, error_type: str, message: str):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


@dataclass
class Result:
    payload: Any = None  # the handler's return value (decoded JSON)
    error: dict | None = None  # {"errorType", "errorMessage", ...}: the function raised
    duration_ms: float = 0.0
    raw_size: int = 0


def python312() -> str:
    """The interpreter standing in for Lambda's python3.12 runtime."""
    candidates = [os.environ.get("SIMAWS_PYTHON312", "")]
    versions = Path(os.path.expanduser("~/.pyenv/versions"))
    if versions.is_dir():
        candidates += [str(p / "bin" / "python3.12") for p in sorted(versions.glob("3.12*"), reverse=True)]
    candidates.append(shutil.which("python3.12") or "")
    for candidate in candidates:
        if "/shims/" in candidate:  # pyenv's shims pick a version by the current folder
            continue
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("Python 3.12 (the Lambda runtime) was not found: install it or set SIMAWS_PYTHON312")


def stage_runtime(target: Path) -> Path:
    """The managed runtime's own packages (boto3 and its dependencies, pure Python), copied from
    this interpreter's site-packages once: offline and exactly the versions the tests use."""
    import boto3
    import botocore

    stamp = target / f".boto3-{boto3.__version__}-botocore-{botocore.__version__}"
    if stamp.exists():
        return target
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    site = Path(boto3.__file__).resolve().parents[1]
    for name in RUNTIME_PACKAGES:
        source = site / name
        if source.is_dir():
            shutil.copytree(source, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, tmp / name)
        else:
            raise RuntimeError(f"{name} is missing from {site}: the Lambda runtime's packages cannot be staged")
    (tmp / stamp.name).touch()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


@dataclass
class FunctionConfig:
    name: str  # the physical function name
    logical_id: str
    handler: str
    code: Path  # the staged asset folder (LAMBDA_TASK_ROOT)
    environment: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 3.0
    memory_mb: int = 128
    reserved_concurrency: int | None = None
    arn: str = ""


class Environment:
    """One execution environment: a process and its two pipes."""

    def __init__(self, fn: LambdaFunction):
        self.fn = fn
        cfg = fn.config
        r_in, w_in = os.pipe()  # parent writes events
        r_out, w_out = os.pipe()  # child writes results
        env = fn.process_environment()
        self.log_file = open(fn.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                fn.python,
                "-S",
                "-s",
                str(BOOTSTRAP),
                str(cfg.code),
                str(fn.runtime_dir),
                cfg.handler,
                str(r_in),
                str(w_out),
            ],
            env=env,
            cwd=str(cfg.code),
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(r_in, w_out),
            start_new_session=True,
        )
        os.close(r_in)
        os.close(w_out)
        self.inbox = os.fdopen(w_in, "w", encoding="utf-8")
        self.outbox = os.fdopen(r_out, "r", encoding="utf-8")
        self.init_ms: float | None = None
        self.created = time.monotonic()

    def _read(self, timeout: float) -> dict | None:
        """The next message, or None after `timeout` seconds (the environment is then killed)."""
        box: list = []
        reader = threading.Thread(target=lambda: box.append(self.outbox.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.kill()
            reader.join(5)
            return None
        line = box[0] if box else ""
        if not line:
            raise InvokeError("Runtime.ExitError", f"the runtime exited (code {self.proc.poll()})")
        return json.loads(line)

    def start(self, timeout: float | None = None) -> None:
        # Lambda's init phase limit is 10 s; a loaded test machine gets more (SIMAWS_INIT_TIMEOUT)
        timeout = timeout or float(os.environ.get("SIMAWS_INIT_TIMEOUT", "60"))
        message = self._read(timeout)
        if message is None:
            raise InvokeError("Runtime.InitTimeout", f"init did not finish in {timeout:.0f} s")
        if "init_error" in message:
            self.kill()
            raise InvokeError(message["init_error"]["errorType"], message["init_error"]["errorMessage"])
        self.init_ms = message.get("init_ms")
        log.info("%s: new execution environment (init %s ms)", self.fn.config.name, self.init_ms)

    def invoke(self, event_json: str, timeout_s: float) -> Result:
        request_id = str(uuid.uuid4())
        deadline_ms = (time.time() + timeout_s) * 1000
        started = time.perf_counter()
        self.inbox.write(f'{{"request_id":"{request_id}","deadline_ms":{deadline_ms:f},"event":{event_json}}}\n')
        self.inbox.flush()
        message = self._read(timeout_s)
        duration = (time.perf_counter() - started) * 1000
        if message is None:
            raise InvokeError("Sandbox.Timedout", f"Task timed out after {timeout_s:.2f} seconds")
        if not message.get("ok"):
            return Result(error={k: v for k, v in message.items() if k != "ok"}, duration_ms=duration)
        raw = message["payload"]
        if len(raw.encode()) > MAX_PAYLOAD_BYTES:
            raise InvokeError(
                "Function.ResponseSizeTooLarge",
                f"Response payload size ({len(raw.encode())} bytes) exceeded maximum allowed "
                f"payload size ({MAX_PAYLOAD_BYTES} bytes).",
            )
        return Result(payload=json.loads(raw), duration_ms=duration, raw_size=len(raw))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for stream in (self.inbox, self.outbox):
            try:
                stream.close()
            except OSError:
                pass
        self.log_file.close()


class LambdaFunction:
    def __init__(
        self,
        config: FunctionConfig,
        *,
        python: str,
        runtime_dir: Path,
        log_dir: Path,
        base_env: dict[str, str],
        max_concurrency: int = DEFAULT_CONCURRENCY,
    ):
        self.config = config
        self.python = python
        self.runtime_dir = runtime_dir
        self.log_path = log_dir / f"lambda-{config.logical_id}.log"
        self.base_env = base_env
        limit = config.reserved_concurrency if config.reserved_concurrency is not None else max_concurrency
        self.limit = max(0, min(limit, max_concurrency))
        self._idle: list[Environment] = []
        self._busy = 0
        self._lock = threading.Condition()
        self._closed = False
        self.init_times: list[float] = []
        self.invocations = 0

    def process_environment(self) -> dict[str, str]:
        cfg = self.config
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(cfg.code),
            "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
            "_HANDLER": cfg.handler,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
            "SIMAWS_FUNCTION_ARN": cfg.arn,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
        }
        env.update(self.base_env)
        env.update(cfg.environment)
        return env

    def _acquire(self, wait_s: float) -> Environment | None:
        deadline = time.monotonic() + wait_s
        with self._lock:
            while True:
                if self._closed:
                    raise InvokeError("ServiceException", "the simulation is stopping")
                while self._idle:
                    env = self._idle.pop()
                    if env.alive():
                        self._busy += 1
                        return env
                    env.kill()
                if self._busy < self.limit:
                    self._busy += 1
                    return None  # the caller creates a new environment
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InvokeError("TooManyRequestsException", "Rate Exceeded.")
                self._lock.wait(left)

    def _release(self, env: Environment | None) -> None:
        with self._lock:
            self._busy -= 1
            if env is not None and env.alive() and not self._closed:
                self._idle.append(env)
            elif env is not None:
                env.kill()
            self._lock.notify()

    def invoke(self, event: Any, *, wait_for_slot_s: float = 0.0) -> Result:
        """A synchronous invocation (RequestResponse)."""
        event_json = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        if len(event_json.encode()) > MAX_PAYLOAD_BYTES:
            raise InvokeError(
                "RequestEntityTooLargeException",
                f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation",
            )
        if self.limit == 0:
            raise InvokeError("TooManyRequestsException", "Rate Exceeded. (reserved concurrency 0)")
        env = self._acquire(wait_for_slot_s)
        try:
            if env is None:
                env = Environment(self)
                env.start()
                if env.init_ms is not None:
                    self.init_times.append(env.init_ms)
            self.invocations += 1
            return env.invoke(event_json, self.config.timeout_s)
        except InvokeError:
            if env is not None:
                env.kill()
                env = None
            raise
        finally:
            self._release(env)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            envs, self._idle = self._idle, []
            self._lock.notify_all()
        for env in envs:
            env.kill()
