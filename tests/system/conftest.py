"""The single-machine stack, started through its real entry point (`cogplane up`, what `make up`
runs) on a free port, driven over real HTTP. Every stack is stopped by pid by the test that
started it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
ENV_CACHE = REPO / ".cache" / "envs"  # model environments, shared by test runs (built once)
TOKEN = "r8_systemtest-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live process below pid (runners and cog servers run in their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


class Stack:
    def __init__(
        self, home: Path, *, port: int | None = None, env: dict[str, str] | None = None, examples: Path | None = None
    ):
        self.home = home
        self.port = port or free_port()
        self.extra_env = env or {}
        self.tls = self.extra_env.get("COGPLANE_TLS", "1") != "0"
        # `cogplane up` serves HTTPS with a CA it makes once under home/tls (cogplane/tls.py)
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.examples = examples
        self.proc: subprocess.Popen | None = None
        self.output = home.parent / f"stack-{self.port}.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COGPLANE_", "REPLICATE_"))}
        env.update(
            {
                "PORT": str(self.port),
                "COGPLANE_HOME": str(self.home),
                "COGPLANE_TOKEN": TOKEN,
                "COGPLANE_ENV_CACHE": str(ENV_CACHE),
                "COGPLANE_IDLE_TIMEOUT": "120",
                "COGPLANE_STOP_GRACE": "5",  # a stack a test stops gives in-flight work 5 s (not 30)
            }
        )
        if self.examples is not None:
            env["COGPLANE_EXAMPLES"] = str(self.examples)
        env.update(self.extra_env)
        return env

    command = [str(REPO / ".venv" / "bin" / "cogplane"), "up"]
    shape = "local"
    # A `Prefer: wait` short enough to run out in the client tests that need it. replicate 1.0.7
    # reads the answer with a timeout of wait + 0.5 s, so a warm create must fit in that: on the
    # simulation every AWS call is a signed round trip to moto on a shared VM (over 1.5 s seen).
    short_wait = 1
    hardware = ["cpu"]  # what GET /v1/hardware lists (the single machine: its CPU)

    @property
    def stream_base(self) -> str:
        """Where urls.stream and signed file links point (the API itself on one machine)."""
        return self.url

    @property
    def path_prefix(self) -> str:
        """The base path of the API (the API Gateway stage on the simulation)."""
        from urllib.parse import urlparse

        return urlparse(self.url).path.rstrip("/")

    def start(self, timeout: float = 120) -> Stack:
        ENV_CACHE.mkdir(parents=True, exist_ok=True)
        self.offset = self.output.stat().st_size if self.output.exists() else 0
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stack exited with {self.proc.returncode}:\n{self.log()}")
            if "cogplane is up at" in self.log():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the stack was not up after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """What this run of the stack printed."""
        if not self.output.exists():
            return ""
        with open(self.output, "rb") as fh:
            fh.seek(getattr(self, "offset", 0))
            return fh.read().decode(errors="replace")

    def stop(self, timeout: float = 60) -> list[int]:
        """SIGINT (Ctrl-C) and wait; returns processes it left behind (should be none)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        below = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in below):
            time.sleep(0.1)
        left = [p for p in below if alive(p)]
        for pid in left:  # never leave anything behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    @property
    def ca(self) -> str | bool:
        """What clients pass as `verify`: the stack's CA file (or True over plain HTTP)."""
        return str(self.home / "tls" / "ca.pem") if self.tls else True

    @property
    def verify(self):
        """`verify` for httpx: an SSLContext trusting the stack's CA."""
        import ssl

        return ssl.create_default_context(cafile=self.ca) if self.tls else True

    def client(self, token: str | None = TOKEN, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers, timeout=90, verify=self.verify, **kwargs)

    def anon(self, **kwargs) -> httpx.Client:
        """A client without an Authorization header."""
        return self.client(None, **kwargs)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**self.env, "COGPLANE_URL": self.url}  # the CLI trusts home/tls/ca.pem itself
        result = subprocess.run(
            [str(REPO / ".venv" / "bin" / "cogplane"), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"cogplane {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    # --- the platform's own records (runner ids, runner states), read from its store -------------
    def prediction_record(self, prediction_id: str) -> dict:
        """The stored prediction, internal fields included (runner_id): the SQLite database here."""
        return db_rows(self, "SELECT data FROM predictions WHERE id = ?", (prediction_id,))[0]

    def runner_records(self, pool: str | None = None) -> list[dict]:
        """The live runners' records (of one pool), as the dispatcher and the expirer see them."""
        if pool is None:
            return db_rows(self, "SELECT data FROM runners")
        return db_rows(self, "SELECT data FROM runners WHERE pool = ?", (pool,))

    def as_in_container(self, text: str) -> str:
        """Text as a deployment would show it (the simulation runs each ECS task under a folder of
        its own that stands in for the container's `/`); unchanged on one machine."""
        return text

    def replicate(self, token: str = TOKEN, **kwargs):
        """The official Python client on the stack. replicate 1.0.7 builds its own
        `httpx.HTTPTransport()`, so `Client(verify=...)` never reaches it: trust goes through the
        transport (or SSL_CERT_FILE, which that transport honours; see the README)."""
        import replicate

        kwargs.setdefault("transport", httpx.HTTPTransport(verify=self.verify))
        return replicate.Client(api_token=token, base_url=self.url, **kwargs)


class SimStack(Stack):
    """The simulated deployment (`make sim-aws`: `python -m simaws`, needs cdk.out with the staged
    Lambda asset), plain HTTP, its base URL under the API Gateway stage. Model environments come
    from the shared cache, standing in for a runner volume (SIMAWS_ENV_CACHE), unless `env` sets
    SIMAWS_ENV_CACHE="" (then the GPU task definitions' host volume holds them, as deployed)."""

    command = [str(REPO / ".venv" / "bin" / "python"), "-m", "simaws"]
    stage = "api"
    shape = "sim-aws"
    short_wait = 3
    hardware = ["cpu", "gpu-t4", "gpu-a10g", "gpu-l4", "gpu-l40s"]  # the deployed SKUs (infra)
    stream_base = ""  # the stream function's Function URL, read from the banner at start

    def __init__(
        self, home: Path, *, port: int | None = None, env: dict[str, str] | None = None, examples: Path | None = None
    ):
        # IAM enforced (each function and task with its role's policies), whatever the shell says
        env = {"COGPLANE_TLS": "0", "SIMAWS_IAM": "1", **(env or {})}
        super().__init__(home, port=port, env=env, examples=examples)
        self.url = f"http://127.0.0.1:{self.port}/{self.stage}"
        self.output = home.parent / f"sim-{self.port}.log"

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        cache = env.pop("COGPLANE_ENV_CACHE")
        env.setdefault("SIMAWS_ENV_CACHE", cache)
        env.setdefault("COGPLANE_USER", "local")  # the account the system suites push to (as `make up`'s)
        return env

    def start(self, timeout: float = 300) -> SimStack:
        super().start(timeout)
        found = re.search(r"AWS \(moto server\):\s+(\S+)\s+table (\S+), bucket (\S+)", self.log())
        assert found, self.log()
        self.endpoint, self.table, self.bucket = found.groups()
        self.stream_base = re.search(r"Function URL:\s+(\S+)", self.log()).group(1)
        try:
            self._push_examples()
        except BaseException:
            self.stop()  # the fixture never gets it: stop what was started
            raise
        return self

    def _push_examples(self) -> None:
        """What `make up` does at start (cogplane/embedded/bootstrap.py): every folder of the
        examples pushed as a public model of the `examples` organization. The deployed stack
        pushes no examples, so the suites' harness does it through the API, as an operator
        would (an org owned by the admin account, `cogplane push --public`)."""
        folder = self.examples if self.examples is not None else REPO / "examples"
        names = sorted(p.name for p in folder.iterdir() if (p / "cog.yaml").is_file()) if folder.is_dir() else []
        if not names:
            return
        with self.client() as c:
            me = c.get("/v1/account").json()["username"]
            if c.get("/v1/models/examples/" + names[0]).status_code == 404:  # not yet (a restart keeps them)
                made = self.cli("admin", "orgs", "create", "examples", "--owner", me, check=False)
                assert made.returncode == 0 or "exists" in made.stderr, made.stderr
        for name in names:
            self.cli("push", "--public", str(folder / name), f"examples/{name}")

    def as_in_container(self, text: str) -> str:
        """Paths under a task's folder (simaws/ecs.py: $COGPLANE_HOME/sim/ecs/tasks/<task id>) as the
        task's container sees them: from its `/`."""
        tasks = re.escape(str(self.home.resolve() / "sim" / "ecs" / "tasks"))
        return re.sub(tasks + r"/[0-9a-f-]+(?=/)", "", text)

    def aws(self, service: str):
        """A boto3 client on the simulation's moto server, as its administrator (with IAM enforced,
        the keys it writes under its home; else any key)."""
        import json

        import boto3

        keys = self.home / "sim" / "admin-credentials.json"
        creds = json.loads(keys.read_text()) if keys.is_file() else {}
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY", "testing"),
        )

    def prediction_record(self, prediction_id: str) -> dict:
        """The stored prediction read from the DynamoDB table (the item's JSON record)."""
        from cogplane.adapters.aws.dynamodb import DynamoStateStore

        found = DynamoStateStore(self.aws("dynamodb"), self.table).get_prediction(prediction_id)
        assert found is not None, prediction_id
        return found.to_dict()

    def runner_records(self, pool: str | None = None) -> list[dict]:
        from cogplane.adapters.aws.dynamodb import DynamoStateStore

        return [x.to_dict() for x in DynamoStateStore(self.aws("dynamodb"), self.table).list_runners(pool)]


def stack_class(config) -> type[Stack]:
    """The class of the shape `--shape` asks for (the local stack by default)."""
    return SimStack if config.getoption("--shape") == "sim-aws" else Stack


def start_stack(config, home: Path, **kwargs) -> Stack:
    """The shape `--shape` asks for (the local stack by default)."""
    return stack_class(config)(home, **kwargs).start()


def pytest_runtest_setup(item):
    """`--shape sim-aws` runs every system suite on the simulated deployment, except
    - tests marked `single_machine("why")`: a feature only `make up` has (the reason says which);
    - tests marked `own_shape`: they start the simulation themselves and ran in the default pass."""
    if item.config.getoption("--shape") != "sim-aws":
        return
    single = item.get_closest_marker("single_machine")
    if single is not None:
        pytest.skip(f"single machine only: {single.args[0] if single.args else single.kwargs['reason']}")
    own = item.get_closest_marker("own_shape")
    if own is not None:
        pytest.skip(own.args[0] if own.args else "starts the simulation itself: the default pass ran it")


@pytest.fixture(scope="session")
def stack(tmp_path_factory, pytestconfig):
    """One stack for the system tests of a session (with the examples pushed on `make up`)."""
    home = tmp_path_factory.mktemp("stack") / "home"
    s = start_stack(pytestconfig, home, env={"COGPLANE_PAGE_SIZE": "5"})
    try:
        yield s
    finally:
        left = s.stop()
        assert not left, f"processes left behind after Ctrl-C: {left}"


@pytest.fixture(scope="session")
def one_runner_stack(tmp_path_factory, pytestconfig):
    """A stack that starts at most one runner per pool, for tests about what one runner does: the
    default adds a second runner while a backlog persists (e.g. during a slow cold boot), and that
    runner may take the work the test watches."""
    home = tmp_path_factory.mktemp("one-runner") / "home"
    s = start_stack(pytestconfig, home, env={"COGPLANE_MAX_RUNNERS": "1"})
    try:
        yield s
    finally:
        left = s.stop()
        assert not left, f"processes left behind after Ctrl-C: {left}"


@pytest.fixture
def model_copy(tmp_path):
    """A copy of a fixture model folder (so tests can edit it)."""

    def copy(name: str) -> Path:
        source = REPO / "tests" / "fixtures" / "system_models" / name
        if not source.exists():
            source = REPO / "examples" / name
        target = tmp_path / name
        shutil.copytree(source, target)
        return target

    return copy


def wait_for(predicate, timeout: float = 60, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def node_env(stack: Stack, **extra: str) -> dict[str, str]:
    """The environment of a `node --test` run against the stack (node trusts the CA via
    NODE_EXTRA_CA_CERTS, as the README tells users)."""
    env = {**os.environ, "COGPLANE_URL": stack.url, "COGPLANE_TOKEN": TOKEN, **extra}
    if stack.tls:
        env["NODE_EXTRA_CA_CERTS"] = str(stack.ca)
    return env


__all__ = ["Stack", "SimStack", "TOKEN", "REPO", "wait_for", "descendants", "alive", "sys", "node_env"]


def db_rows(stack: Stack, sql: str, params: tuple = ()) -> list:
    """Read the stack's SQLite state directly (runner records, internal fields)."""
    import json
    import sqlite3

    db = sqlite3.connect(stack.home / "cogplane.db", timeout=30)
    try:
        return [json.loads(row[0]) for row in db.execute(sql, params).fetchall()]
    finally:
        db.close()


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, the pixel bytes without the per-row filter byte) of an 8-bit RGB PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    assert (depth, color) == (8, 2), "an 8-bit RGB PNG"
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    row = 1 + 3 * width
    return width, height, b"".join(raw[i * row + 1 : (i + 1) * row] for i in range(height))


def is_black(data: bytes) -> bool:
    """Every pixel 0 (whatever each row's filter, differences of zeros are zeros)."""
    return not any(png_pixels(data)[2])


def fetch(stack: Stack, url: str) -> bytes:
    with stack.client() as c:
        r = c.get(url)
        assert r.status_code == 200, r.text
        return r.content
