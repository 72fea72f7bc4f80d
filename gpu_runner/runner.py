"""The runner: claims a pool's jobs exactly once, drives a real cog server, reports back.

One runner process (local) or ECS task (deployed) serves one pool. Flow per prediction:
claim job -> conditional write starting→processing (the exactly-once guard) -> `PUT
/predictions/{id}` with `Prefer: respond-async` and a webhook back to this runner -> record logs
and growing output as webhooks arrive -> record the terminal state with metrics -> ack the job.

File outputs reach us as `data:` URIs in cog's output (cog runs without `--upload-url`, so a list
keeps the model's order: map_output), go to the blob store, and are recorded as blob references
that the API turns into signed URLs.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from cogplane.builds import BuildLog
from cogplane.bundle import unpack_bundle
from cogplane.cogconfig import ConfigError, effective_concurrency
from cogplane.domain.entities import Job, Prediction, Runner, Version
from cogplane.domain.errors import Conflict, NotFound
from cogplane.domain.status import TERMINAL
from cogplane.domain.strictjson import loads_lenient
from cogplane.domain.timefmt import parse, seconds_between
from cogplane.schema import file_inputs, is_iterator_output, output_schema, resolve_prop, training_view
from cogplane.sealing import scrub
from cogplane.services.files import file_id_from_url
from cogplane.services.presenters import blob_ref
from gpu_runner.cog_client import SETUP_FAILED, CogClient, CogUpdate, validation_message
from gpu_runner.cog_server import CogServer, clean_setup_error, model_setup_lines, write_schema
from gpu_runner.environment import EnvironmentBuildError, build_record, ensure_environment
from gpu_runner.external_server import DEFAULT_COG_URL, ExternalCogServer

log = logging.getLogger("cogplane.runner")

EXIT_SETUP_FAILED = 3  # tells the dispatcher to back off before booting this pool again
_PREFIX = re.compile(r"^(?:Prediction failed: )+")


def clean_error(error: Any) -> str | None:
    """cog says "Prediction failed: Prediction failed: ValueError: msg"; keep "ValueError: msg"."""
    if error is None:
        return None
    return _PREFIX.sub("", str(error)).strip() or str(error)


@dataclass
class InFlight:
    job: Job
    prediction_id: str
    created_at: str
    started_mono: float
    log_prefix: str
    metrics: dict[str, Any]
    iterator: bool
    safety: bool = False  # its image outputs are checked before they are recorded (held until then)
    cancel_sent_at: float | None = None
    secrets: dict[str, Any] = field(default_factory=dict)  # decrypted secret inputs (memory only)
    blob_dir: str = ""  # the prediction's blob folder: predictions/{blob_dir}/… (never its id)
    done: threading.Event = field(default_factory=threading.Event)
    written: dict[str, Any] = field(default_factory=dict)  # what progress() last stored
    stored: dict[tuple, str] = field(default_factory=dict)  # output files already in the blob store


@dataclass
class RunnerConfig:
    pool: str
    work_root: Path
    env_cache: Path
    idle_timeout: float = 300.0  # scale to zero: exit after this long without work (0 = never)
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 5.0
    stop_grace: float = 20.0
    setup_timeout: float | None = 600.0
    keep_warm: bool = False  # min_instances runners never exit on idle
    spawned_at: float | None = None
    # image versions: the model container's cog server (a sidecar's neighbour), not one we start
    cog_url: str = field(default_factory=lambda: os.environ.get("COG_URL", DEFAULT_COG_URL))
    # the port of the runner's webhook/upload server (0 = any); image tasks fix it (their cog was
    # once started with `--upload-url http://127.0.0.1:<port>/upload/`, still served for old tasks)
    http_port: int = field(default_factory=lambda: int(os.environ.get("COGPLANE_RUNNER_HTTP_PORT") or 0))
    runner_id: str = field(default_factory=lambda: "r-" + uuid.uuid4().hex[:12])


class LogBuffer:
    """Collects boot/build lines for waiting predictions and writes them at most every 0.5 s."""

    def __init__(self, runner: RunnerProcess, prediction_id: str | None):
        self.runner = runner
        self.prediction_id = prediction_id
        self.lines: list[str] = []
        self.last = 0.0

    def __call__(self, line: str) -> None:
        self.lines.append(line.rstrip("\n") + "\n")
        if time.monotonic() - self.last > 0.5:
            self.flush()

    def flush(self) -> None:
        if not self.prediction_id or not self.lines:
            return
        text, self.lines = "".join(self.lines), []
        self.last = time.monotonic()
        self.runner.append_logs(self.prediction_id, text)


class RunnerProcess:
    """One runner: serves one pool until idle, stopped, or its model cannot be set up."""

    def __init__(self, services, config: RunnerConfig):
        self.services = services
        self.state = services.state
        self.queue = services.queue
        self.blobs = services.blobs
        self.clock = services.clock
        self.config = config
        self.id = config.runner_id
        self.started_mono = time.monotonic()
        self.spawned_at = config.spawned_at  # unix time the dispatcher started us (for boot_time)
        self.started_at = self.clock.now()
        self.stopping = threading.Event()
        self.stopped = threading.Event()  # shutdown is over: heartbeats end
        self.stop_reason = "The runner was stopped before the prediction finished."
        self.inflight: dict[str, InFlight] = {}
        self.lock = threading.Lock()
        self.server: CogServer | ExternalCogServer | None = None
        self.cog: CogClient | None = None  # speaks to self.server
        self.version: Version | None = None
        self.model_dir: Path | None = None
        self.weights_path: Path | None = None  # a trained version's weights (COG_WEIGHTS)
        self.env_dir: Path | None = None
        self.concurrency = 1
        self.iterator_output = False
        self.restart_needed = threading.Event()
        self.server_restarts = 0
        self._boot_job: Job | None = None  # the job whose lease is kept while we boot
        self.wakeup = threading.Event()  # rung by the doorbell and by finished predictions
        self.beat_now = threading.Event()  # asks the heartbeat thread for an immediate beat
        self.doorbell: socket.socket | None = None
        self.cold_metrics: dict[str, float] = {}
        self.record = Runner(
            id=self.id,
            pool=config.pool,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=self.started_at,
            heartbeat_at=self.started_at,
        )
        self.httpd: ThreadingHTTPServer | None = None
        self.upload_counter = itertools.count(1)
        self.served_inputs: dict[str, str] = {}  # token -> blob key (file inputs served to cog)
        self.served_by_prediction: dict[str, list[str]] = {}
        self.last_work = time.monotonic()
        # a `t-` pool runs trainings: cog in train mode, `/trainings/{id}`, TrainingInput
        self.training = config.pool.startswith("t-")
        self.route = "trainings" if self.training else "predictions"

    # --- state helpers --------------------------------------------------------------------
    def append_logs(self, prediction_id: str, text: str) -> None:
        try:
            current = self.state.get_prediction(prediction_id)
            if current is None or current.status in TERMINAL:
                return
            self.state.update_prediction(
                prediction_id, {"logs": (current.logs or "") + text}, expect_status=[current.status]
            )
        except (Conflict, NotFound):
            pass

    def write_record(self) -> None:
        with self.lock:
            self.record.in_flight = list(self.inflight)
        self.record.heartbeat_at = self.clock.now()
        self.state.put_runner(self.record)

    def heartbeat(self) -> None:
        self.write_record()
        with self.lock:
            jobs = [f.job for f in self.inflight.values()]
        for job in jobs:  # keep the leases of the jobs we hold
            try:
                self.queue.release(job, delay=self.config.lease_seconds)
            except Exception:  # noqa: BLE001 - a lost lease is harmless: processing is guarded by state
                log.debug("could not extend lease", exc_info=True)

    def set_state(self, value: str) -> None:
        self.record.state = value
        self.heartbeat()

    # --- the version ----------------------------------------------------------------------
    def resolve_version(self) -> Version:
        pool = self.config.pool
        if pool.startswith(("v-", "t-")):
            found = self.state.find_versions(pool[2:])
            if not found:
                raise RuntimeError(f"no version {pool[2:]} exists")
            return found[0]
        if pool.startswith("d-"):
            # d-{owner}.{name}.{version_id}: owners have no '.', names may, version ids are hex.
            # The pool's version is the one in its name, not the deployment's current one: after a
            # release to another version this pool still drains its work with its own version.
            rest, _, version_id = pool[2:].rpartition(".")
            owner, _, name = rest.partition(".")
            if not owner or not name or not version_id:
                raise RuntimeError(f"malformed deployment pool {pool!r}")
            deployment = self.state.get_deployment(owner, name)
            if deployment is not None:
                m_owner, _, m_name = deployment.model.partition("/")
                version = self.state.get_version(m_owner, m_name, version_id)
                if version is not None:
                    return version
            found = self.state.find_versions(version_id)  # the deployment was deleted meanwhile
            if not found:
                raise RuntimeError(f"deployment {owner}/{name}: no version {version_id} exists")
            return found[0]
        raise RuntimeError(f"unknown pool {pool!r}")

    def prepare_source(self, version: Version, on_log) -> Path:
        """Unpack the bundle once per version (atomic rename: runners of a pool share it)."""
        target = self.config.work_root / "versions" / version.id
        if (target / "cog.yaml").is_file():
            return target
        on_log(f"Fetching the model source ({version.size / 1e6:.1f} MB)")
        tmp = self.config.work_root / "versions" / f".{version.id}.{self.id}"
        shutil.rmtree(tmp, ignore_errors=True)
        unpack_bundle(self.blobs.get(version.bundle_key), tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another runner won the race: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def prepare_environment(self, version: Version, model_dir: Path, on_log) -> Path:
        """The version's environment (built, or found in the cache). Its build output goes to the
        version's build log (cogplane.builds), not to the prediction: that gets one line."""
        build_log = BuildLog(self.blobs, version.id)
        started: dict[str, float] = {}

        def on_build_start() -> None:  # the prediction's one line for this phase
            started["at"] = time.monotonic()
            build_log.building = True
            build_log.save("building", started_at=self.clock.now())
            on_log("Building the model's environment (its log is in the version's build log)")

        try:
            env_dir = ensure_environment(
                version.config, model_dir, self.config.env_cache, on_log=build_log, on_build_start=on_build_start
            )
        except EnvironmentBuildError as exc:
            build_log.save("failed", error=exc.message, completed_at=self.clock.now())
            raise
        metadata, env_log = build_record(env_dir)
        if "at" not in started and env_log:
            build_log(f"cogplane: environment {env_dir.name[:12]} was already built; the log of that build:")
            build_log.lines.extend(env_log.rstrip("\n").splitlines())
        build_log.save(
            "succeeded",
            environment=env_dir.name[:12],
            python_version=metadata.get("python"),
            build_seconds=metadata.get("build_seconds"),
            completed_at=self.clock.now(),
        )
        return env_dir

    # --- boot -----------------------------------------------------------------------------
    @property
    def run_schema(self) -> dict[str, Any]:
        """The schema of what this runner runs: a training pool's Input/Output are the
        version's TrainingInput/TrainingOutput (the schema file cog reads stays the version's)."""
        schema = (self.version.openapi_schema or {}) if self.version else {}
        return training_view(schema) if self.training else schema

    def prepare_weights(self, version: Version, on_log) -> Path | None:
        """A trained version's weights, fetched once per version to a local file: cog passes
        COG_WEIGHTS to `setup(self, weights)` as given, so a path works with open()/Path()."""
        if not version.weights_key:
            return None
        name = os.path.basename(version.weights_key) or "weights"
        target = self.config.work_root / "weights" / version.id / name
        if not target.exists():
            on_log(f"Fetching the trained weights ({version.trained_from} + {name})")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.{self.id}")
            tmp.write_bytes(self.blobs.get(version.weights_key))
            os.replace(tmp, target)  # atomic: runners of a pool share it
        return target

    def boot(self, waiting: str | None) -> tuple[bool, str]:
        """Make the cog server READY. Returns (ok, reason). Boot lines go to the waiting prediction."""
        on_log = LogBuffer(self, waiting)
        t0, wall0 = time.monotonic(), time.time()
        from gpu_runner.ecs_metadata import boot_phases

        phases = boot_phases(self.spawned_at) if not self.server_restarts else {}
        try:
            self.version = self.version or self.resolve_version()
            on_log(f"Booting {self.version.model} (cold start: no runner was warm)")
            if "capacity_time" in phases:
                on_log(
                    f"Capacity provisioning (task placed, instance started if none was free): "
                    f"{phases['capacity_time']:.2f} s"
                )
            if "image_pull_time" in phases:
                on_log(f"Image pull: {phases['image_pull_time']:.2f} s")
            if self.version.kind == "image":  # the model container serves cog: nothing to build
                on_log(f"Waiting for the model image's cog server ({self.version.image})")
            else:
                self.model_dir = self.prepare_source(self.version, on_log)
                self.env_dir = self.prepare_environment(self.version, self.model_dir, on_log)
                write_schema(self.model_dir, self.version.openapi_schema)
                self.weights_path = self.prepare_weights(self.version, on_log)
        except EnvironmentBuildError as exc:
            on_log("Building the model's environment failed (its log is in the version's build log)")
            on_log.flush()
            return False, f"Building the model's environment failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - any boot failure fails the waiting work, clearly
            on_log.flush()
            log.exception("boot failed")
            return False, f"The model could not be prepared: {exc}"
        self.iterator_output = not self.training and is_iterator_output(self.version.openapi_schema or {})
        t1 = time.monotonic()
        ok, reason = self.start_server(on_log)
        t2 = time.monotonic()
        # boot: from the runner's spawn (or this boot's start) until the cog server is launched;
        # setup: from then until cog says READY (imports + the model's setup())
        boot_start = t0 - max(0.0, wall0 - self.spawned_at) if self.spawned_at and not self.server_restarts else t0
        self.cold_metrics = {
            "boot_time": round(t1 - min(t0, boot_start), 4),
            "setup_time": round(t2 - t1, 4),
            **phases,
        }  # capacity_time and image_pull_time are parts of boot_time
        on_log(
            f"Model ready (boot {self.cold_metrics['boot_time']:.2f} s, setup {self.cold_metrics['setup_time']:.2f} s)"
            if ok
            else "Model setup failed"
        )
        on_log.flush()
        return ok, reason

    def start_server(self, on_log) -> tuple[bool, str]:
        assert self.version and self.httpd
        config = self.version.config or {}
        # concurrency.max, else @concurrent(max=N) read from the source as cog's CLI reads it
        try:
            self.concurrency = effective_concurrency(config, self.model_dir if self.version.kind != "image" else None)
        except ConfigError as exc:  # refused at push by the CLI and the API; not expected here
            return False, f"The model's cog.yaml is invalid: {exc}"
        if self.version.kind == "image":
            self.server = ExternalCogServer(self.config.cog_url)
        else:
            assert self.model_dir and self.env_dir
            # no upload URL: file outputs come back as data URIs in the model's order (map_output)
            weights = self.weights_path
            self.server = CogServer(
                self.model_dir,
                self.env_dir,
                concurrency=self.concurrency,
                setup_timeout=self.config.setup_timeout,
                log_path=self.config.work_root / "logs" / f"{self.id}.log",
                config=config,
                env={"COG_WEIGHTS": str(weights)} if weights else None,
                train=self.training,
            )
        self.server.start()
        health = self.server.wait_ready(timeout=(self.config.setup_timeout or 600) + 30)
        if health.serving:
            self.cog = self.server.client(self.route)
            # what the model printed while it was loaded and in setup()
            for line in model_setup_lines(health.setup_logs).splitlines():
                on_log(line)
            return True, ""
        if health.status == SETUP_FAILED:
            detail = clean_setup_error(health.error)
        else:
            detail = health.error or health.status
        self.server.stop(grace=2)
        # a failed setup's health body holds only the error: the model's output (its traceback
        # too) is in the server's log, complete once the server has stopped
        output = (
            self.server.setup_output() if isinstance(self.server, CogServer) else model_setup_lines(health.setup_logs)
        )
        for line in output.splitlines():
            on_log(line)
        return False, f"Model setup failed: {detail}"

    # --- jobs -----------------------------------------------------------------------------
    def fail_queued(self, reason: str, first: Job | None) -> None:
        """Setup failed: fail the claimed job and everything waiting in the pool, then back off."""
        jobs = [first] if first else []
        while True:
            job = self.queue.claim(self.config.pool, lease_seconds=self.config.lease_seconds)
            if job is None:
                break
            jobs.append(job)
        for job in jobs:
            try:
                self.state.update_prediction(
                    job.prediction_id,
                    {"status": "failed", "error": reason, "completed_at": self.clock.now()},
                    expect_status=["starting"],
                )
            except (Conflict, NotFound):
                pass
            self.queue.ack(job)

    def start_job(self, job: Job, cold: bool) -> None:
        prediction = self.state.get_prediction(job.prediction_id)
        if prediction is None or prediction.status != "starting":
            self.queue.ack(job)  # canceled while queued, or already taken: nothing to run
            return
        now = self.clock.now()
        if prediction.deadline and parse(now) >= parse(prediction.deadline):
            try:
                self.state.update_prediction(
                    prediction.id,
                    {
                        "status": "aborted",
                        "completed_at": now,
                        "error": "The prediction did not start before its Cancel-After deadline.",
                    },
                    expect_status=["starting"],
                )
            except Conflict:
                pass
            self.queue.ack(job)
            return
        waited = seconds_between(prediction.created_at, now)
        metrics: dict[str, Any] = {}
        if cold:
            metrics.update(self.cold_metrics)
        cold = metrics.get("boot_time", 0.0) + metrics.get("setup_time", 0.0)
        metrics["queue_time"] = round(max(0.0, waited - cold), 4)
        flight = InFlight(
            job=job,
            prediction_id=prediction.id,
            created_at=prediction.created_at,
            started_mono=time.monotonic(),
            log_prefix=prediction.logs or "",
            metrics=metrics,
            iterator=self.iterator_output,
            safety=prediction.safety is not None,
            blob_dir=prediction.blob_dir or prediction.id,
        )
        with self.lock:
            self.inflight[prediction.id] = flight
        # The heartbeat thread records that we hold it within milliseconds (off the warm path);
        # the local dispatcher also finds a dead runner's `processing` predictions by runner_id.
        self.beat_now.set()
        try:
            prediction = self.state.update_prediction(
                prediction.id,
                {"status": "processing", "started_at": now, "runner_id": self.id},
                expect_status=["starting"],
            )
        except Conflict:
            with self.lock:
                self.inflight.pop(job.prediction_id, None)
            self.queue.ack(job)
            return
        if job.sealed:  # secret inputs: decrypted here, kept in memory for this run only
            try:
                flight.secrets = self.services.secret_box().open(prediction.id, job.sealed)
            except Exception as exc:  # noqa: BLE001 - SealError, or no key configured
                log.error("could not open the secret inputs of %s: %s", prediction.id, exc)
                self.finish(
                    prediction.id,
                    CogUpdate(status="failed", error=f"The prediction's secret inputs could not be read: {exc}"),
                )
                return
        try:
            self.send(prediction, flight)
        except Exception as exc:  # noqa: BLE001 - one prediction's bug must not take the runner down
            log.exception("could not start prediction %s", prediction.id)
            self.finish(
                prediction.id, CogUpdate(status="failed", error=f"The runner could not start the prediction: {exc}")
            )

    def send(self, prediction: Prediction, flight: InFlight) -> None:
        assert self.server and self.httpd and self.cog
        hook = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhook/{prediction.id}"
        try:
            model_input = self.model_input({**(prediction.input or {}), **flight.secrets}, prediction.id)
        except InputFetchError as exc:
            self.finish(prediction.id, CogUpdate(status="failed", error=str(exc)))
            return
        answer = self.cog.predict(prediction.id, model_input, hook)
        if answer.accepted:
            return
        if answer.status == 422:
            reason = validation_message(answer.text)
        else:
            reason = f"The model server refused the prediction ({answer.status or 'no answer'}): {answer.text[:500]}"
        reason = scrub(reason, flight.secrets) or reason
        self.finish(prediction.id, CogUpdate(status="failed", error=reason))
        if answer.status != 422:
            self.restart_needed.set()

    def model_input(self, value: dict[str, Any], prediction_id: str = "") -> dict[str, Any]:
        """The input cog gets: every file input (`format: uri`) that is a URL becomes a URL of this
        runner's own loopback server, so cog never reaches a user-chosen host and never needs our CA:

        - our `/v1/files/{id}` URLs are served from the blob store;
        - other http(s) URLs are fetched here through cogplane.netguard (the install's allow-list,
          size and time limits, no redirects to unchecked hosts), stored in the blob store under
          the prediction, and served from there;
        - `data:` URIs go to cog unchanged. A failed fetch fails the prediction (InputFetchError)."""
        files = file_inputs(self.run_schema)
        out = dict(value)
        for name, is_list in files.items():
            if out.get(name) is None:
                continue
            if is_list and isinstance(out[name], list):
                out[name] = [self._input_url(name, v, prediction_id) for v in out[name]]
            elif not is_list:
                out[name] = self._input_url(name, out[name], prediction_id)
        return out

    def _input_url(self, field: str, value: Any, prediction_id: str) -> Any:
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            return value
        if file_id_from_url(value):
            record = self.state.get_file(file_id_from_url(value))
            if record is None:
                raise InputFetchError(f"{field}: the file {value} no longer exists.")
            return self._serve_blob(record.blob_key, record.name, prediction_id)
        from cogplane import netguard
        from cogplane.tls import ssl_context

        settings = self.services.settings
        try:
            data, content_type, filename = netguard.fetch(
                value,
                allow=settings.allowed_networks,
                max_bytes=settings.max_input_fetch_bytes,
                timeout=settings.input_fetch_timeout_seconds,
                ssl_context=ssl_context(settings.home),
            )
        except ValueError as exc:  # BlockedURL / FetchError
            raise InputFetchError(f"{field}: could not fetch the input file: {exc}") from exc
        key = f"{self.blob_folder(prediction_id)}inputs/{next(self.upload_counter)}/{filename}"
        self.blobs.put(key, data, content_type=content_type)
        return self._serve_blob(key, filename, prediction_id)

    def blob_folder(self, prediction_id: str | None) -> str:
        """`predictions/{blob_dir}/` of an in-flight prediction: output URLs never name its id."""
        with self.lock:
            flight = self.inflight.get(prediction_id or "")
        return f"predictions/{flight.blob_dir if flight else 'unclaimed-' + uuid.uuid4().hex}/"

    def _serve_blob(self, key: str, name: str, prediction_id: str) -> str:
        """An unguessable URL on this runner's loopback server that serves one blob to cog (until
        the prediction finishes)."""
        assert self.httpd
        token = uuid.uuid4().hex
        with self.lock:
            self.served_inputs[token] = key
            self.served_by_prediction.setdefault(prediction_id, []).append(token)
        safe = os.path.basename(name.replace("\\", "/")) or "input"
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/input/{token}/{quote(safe)}"

    def map_output(self, value: Any, flight: InFlight | None = None) -> Any:
        """cog's output with every file in it stored in the blob store (as a blob reference).

        Source versions' cog servers run without `--upload-url`: coglet then puts each file in the
        output as a `data:` URI, in the model's order (with an upload URL it uploads the files of a
        list in parallel and lists them in the order the uploads finish). Each one is stored here,
        named by its place in the output (`output.png`, `output_0.png`, ...; a data URI carries no
        file name). A `data:` string where the schema says plain `string` is the model's own text
        and stays as it is. Upload URLs (`/blob/...`, from image versions' cog) map to their blobs."""
        assert self.httpd
        node = output_schema(self.run_schema)
        return self._map_output(value, node, (), flight)

    def _map_output(self, value: Any, node: dict, path: tuple, flight: InFlight | None) -> Any:
        assert self.httpd
        schema = self.run_schema
        if isinstance(node, dict) and "$ref" in node:
            node = resolve_prop(schema, node)
        node = node if isinstance(node, dict) else {}
        if isinstance(value, str):
            prefix = f"http://127.0.0.1:{self.httpd.server_address[1]}/blob/"
            if value.startswith(prefix):
                return blob_ref(unquote(value[len(prefix) :]))
            if value.startswith("data:") and (node.get("format") == "uri" or not node.get("type")):
                return self._store_data_uri(value, path, flight) or value
            return value
        if isinstance(value, list):
            items = node.get("items")
            return [
                self._map_output(v, items if isinstance(items, dict) else {}, (*path, i), flight)
                for i, v in enumerate(value)
            ]
        if isinstance(value, dict):
            declared = node.get("properties")
            props = declared if isinstance(declared, dict) else {}
            extra = node.get("additionalProperties")
            return {
                k: self._map_output(v, props.get(k) or (extra if isinstance(extra, dict) else {}), (*path, k), flight)
                for k, v in value.items()
            }
        return value

    def _store_data_uri(self, uri: str, path: tuple, flight: InFlight | None) -> str | None:
        """Store one `data:[mime][;base64],...` output file; None if it is not a valid data URI.
        An iterator's output is sent again with every webhook: each file is stored once per flight."""
        cache_key = (path, len(uri), hash(uri))
        if flight is not None and cache_key in flight.stored:
            return flight.stored[cache_key]
        header, sep, payload = uri.partition(",")
        if not sep:
            return None
        params = header[len("data:") :].split(";")
        mime = params[0].strip().lower() or "text/plain"
        try:
            data = base64.b64decode(payload, validate=True) if "base64" in params[1:] else unquote_to_bytes(payload)
        except (ValueError, binascii.Error):
            return None
        name = "output" + "".join(f"_{_safe_part(p)}" for p in path) + _extension(mime)
        prediction_id = flight.prediction_id if flight else "unknown"
        ref = self.store_output(prediction_id, name, data, mime)
        if flight is not None:
            flight.stored[cache_key] = ref
        return ref

    def store_output(self, prediction_id: str, name: str, data: bytes, content_type: str | None) -> str:
        """Put one output file in the blob store; its blob key."""
        key = f"{self.blob_folder(prediction_id)}{next(self.upload_counter)}/{name}"
        self.blobs.put(key, data, content_type=content_type)
        return blob_ref(key)

    def progress(self, prediction_id: str, update: CogUpdate) -> None:
        with self.lock:
            flight = self.inflight.get(prediction_id)
        if flight is None:
            return
        changes: dict[str, Any] = {}
        logs = flight.log_prefix + (scrub(update.logs, flight.secrets) or "")
        if logs != flight.written.get("logs", flight.log_prefix):
            changes["logs"] = logs
        # A checked prediction's outputs are held until the check (finish): none is streamed unchecked.
        if flight.iterator and not flight.safety and isinstance(update.output, list):
            output = self.map_output(update.output, flight)
            if output != flight.written.get("output"):
                changes["output"] = output
        if not changes:
            return  # cog's "processing" webhooks often carry nothing new: no write
        flight.written.update(changes)
        try:
            self.state.update_prediction(prediction_id, changes, expect_status=["processing"])
        except (Conflict, NotFound):
            pass

    def finish(self, prediction_id: str, update: CogUpdate) -> None:
        with self.lock:
            flight = self.inflight.get(prediction_id)
        if flight is None:
            return
        now = self.clock.now()
        metrics = dict(flight.metrics)
        cog_metrics = update.metrics
        metrics.update({k: v for k, v in cog_metrics.items() if k != "predict_time"})
        metrics["predict_time"] = round(
            float(cog_metrics.get("predict_time") or time.monotonic() - flight.started_mono), 6
        )
        metrics["total_time"] = round(seconds_between(flight.created_at, now), 6)
        status = update.status
        changes: dict[str, Any] = {
            "status": status,
            "completed_at": now,
            "metrics": metrics,
            "logs": flight.log_prefix + (scrub(update.logs, flight.secrets) or ""),
            "output": self.map_output(update.output, flight),
            "error": scrub(clean_error(update.error), flight.secrets) if status == "failed" else None,
        }
        if flight.safety:
            self.check_safety(prediction_id, changes)
            changes["completed_at"] = now = self.clock.now()
            metrics["total_time"] = round(seconds_between(flight.created_at, now), 6)
        if self.training and status == "succeeded":
            changes = self._trained(prediction_id, changes)
        try:
            self.state.update_prediction(prediction_id, changes, expect_status=["processing"])
        except (Conflict, NotFound):
            pass  # canceled, timed out or failed by someone else first: that state stands
        with self.lock:
            self.inflight.pop(prediction_id, None)
            for token in self.served_by_prediction.pop(prediction_id, []):
                self.served_inputs.pop(token, None)
        flight.done.set()
        self.queue.ack(flight.job)
        self.last_work = time.monotonic()
        self.wakeup.set()
        if update.worker_crashed:
            self.restart_needed.set()

    def check_safety(self, prediction_id: str, changes: dict[str, Any]) -> None:
        """The platform's safety check of the image outputs, before anything is recorded. If it
        cannot run, the prediction fails without its output (no unchecked image is ever shown)."""
        from cogplane.services.safety import SafetyCheckError

        metrics = changes["metrics"]
        if changes.get("output") is None:
            changes["safety"] = {"checked": True, "flagged": []}
            return
        started = time.monotonic()
        try:
            result = self.services.safety.check(prediction_id, changes["output"])
        except Exception as exc:  # noqa: BLE001 - any failure of the check withholds the output
            if not isinstance(exc, SafetyCheckError):
                log.exception("safety check of %s failed", prediction_id)
            metrics["safety_time"] = round(time.monotonic() - started, 4)
            changes.update(
                status="failed",
                output=None,
                safety={"checked": False, "flagged": []},
                error=f"The safety check of the outputs could not run: {exc}",
                logs=changes["logs"] + "Safety checker: the check failed; the outputs are withheld.\n",
            )
            return
        metrics["safety_time"] = result.seconds
        changes.update(
            output=result.output,
            safety={"checked": True, "flagged": result.flagged},
            logs=changes["logs"] + result.logs,
        )

    def _trained(self, training_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A succeeded training: its weights become the destination's new version."""
        training = self.state.get_prediction(training_id)
        if training is None:
            return changes
        try:
            return self.services.trainings.complete(training, changes)
        except Exception as exc:  # noqa: BLE001 - the training fails with the reason, the runner lives on
            log.exception("could not make the trained version of %s", training_id)
            return {
                **changes,
                "status": "failed",
                "output": None,
                "error": f"The trained version could not be created: {exc}",
            }

    def fail_inflight(self, reason: str) -> None:
        with self.lock:
            ids = list(self.inflight)
        for pid in ids:
            self.finish(pid, CogUpdate(status="failed", error=reason))

    def watch_cancels(self) -> None:
        """A prediction canceled (or timed out) in the state store is stopped in cog within ~0.2 s."""
        while not self.stopping.is_set() or self.inflight:
            with self.lock:
                flights = list(self.inflight.values())
            for flight in flights:
                if flight.cancel_sent_at is not None:
                    if time.monotonic() - flight.cancel_sent_at > 30:  # cog never confirmed: give up on it
                        self.finish(flight.prediction_id, CogUpdate(status="canceled"))
                        self.restart_needed.set()
                    continue
                current = self.state.get_prediction(flight.prediction_id)
                if current is None or current.status in TERMINAL:
                    flight.cancel_sent_at = time.monotonic()
                    self.cog_cancel(flight.prediction_id)
            time.sleep(0.2)

    def cog_cancel(self, prediction_id: str) -> None:
        if self.cog is not None:
            self.cog.cancel(prediction_id)

    # --- the HTTP side: cog's webhooks and uploads ------------------------------------------
    def serve_http(self) -> None:
        runner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                data = self._body()
                if not self.path.startswith("/webhook/"):
                    return self._reply(404)
                prediction_id = self.path.rsplit("/", 1)[-1]
                try:  # a model's lone surrogates or NaN must not make the stored prediction unreadable
                    update = CogUpdate.from_json(loads_lenient(data))
                except ValueError:
                    return self._reply(400)
                self._reply(200)
                if update.terminal:
                    runner.finish(prediction_id, update)
                else:
                    runner.progress(prediction_id, update)

            def do_GET(self) -> None:  # noqa: N802 - file inputs, served to cog from the blob store
                parts = self.path.split("?", 1)[0].split("/")
                key = runner.served_inputs.get(parts[2]) if len(parts) >= 4 and parts[1] == "input" else None
                if key is None:
                    return self._reply(404)
                try:
                    data = runner.blobs.get(key)
                except Exception:  # noqa: BLE001 - gone meanwhile
                    return self._reply(404)
                info = runner.blobs.head(key)
                self.send_response(200)
                self.send_header("Content-Type", (info.content_type if info else None) or "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802
                data = self._body()
                if not self.path.startswith("/upload/"):
                    return self._reply(404)
                name = os.path.basename(unquote(self.path[len("/upload/") :])) or "output"
                prediction_id = self.headers.get("x-prediction-id") or "unknown"
                key = runner.store_output(prediction_id, name, data, self.headers.get("content-type"))
                key = key[len(blob_ref("")) :]
                port = runner.httpd.server_address[1] if runner.httpd else runner.config.http_port
                self._reply(201, {"Location": f"http://127.0.0.1:{port}/blob/{key}"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.config.http_port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="runner-http", daemon=True).start()

    # --- main loop --------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, *_: Any) -> None:
        """SIGTERM (ECS scale-in, a retired warm runner) or SIGINT (the local dispatcher: the whole
        platform stops): take no more work, let in-flight predictions finish (shutdown)."""
        if signum == signal.SIGINT:
            self.stop_reason = (
                f"stopped: cogplane was shut down before this prediction finished "
                f"(it had {self.config.stop_grace:g} s to finish)."
            )
        self.stopping.set()
        self.wakeup.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.serve_http()
        self.open_doorbell()
        self.set_state("booting")
        threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
        try:
            return self._run()
        finally:
            self.shutdown()

    def _heartbeats(self) -> None:
        # beats go on while stopping: the in-flight predictions of a stopping runner are still
        # its own (no "lost runner" while they finish)
        while not self.stopped.is_set():
            self.beat_now.wait(self.config.heartbeat_seconds)
            self.beat_now.clear()
            if self.stopped.is_set():
                return
            try:
                self.heartbeat()
            except Exception:  # noqa: BLE001 - keep beating; a missed beat is not fatal
                log.warning("heartbeat failed", exc_info=True)

    def _run(self) -> int:
        # Claim first, so the prediction that caused this cold boot shows the boot in its logs;
        # its lease is extended while we boot (environment builds can take minutes).
        first = self.queue.claim(self.config.pool, lease_seconds=self.config.lease_seconds)
        if first is not None:
            self._boot_job = first
            threading.Thread(target=self._keep_lease, args=(first,), daemon=True).start()
        ok, reason = self.boot(first.prediction_id if first else None)
        self._boot_job = None
        if self.stopping.is_set():  # stopped while booting: the job waits for the next runner
            if first is not None:
                self.queue.release(first, delay=0)
            return 0 if ok else EXIT_SETUP_FAILED
        if not ok:
            log.error("%s", reason)
            self.fail_queued(reason, first)
            return EXIT_SETUP_FAILED
        self.set_state("ready")
        threading.Thread(target=self.watch_cancels, name="cancels", daemon=True).start()
        if first is not None:
            self.start_job(first, cold=True)
        self.last_work = time.monotonic()
        while not self.stopping.is_set():
            if self.restart_needed.is_set() or (self.server and not self.server.alive()):
                if not self.restart_server():
                    return EXIT_SETUP_FAILED
            self.wakeup.clear()
            with self.lock:
                busy = len(self.inflight)
            if busy >= self.concurrency:
                self.wakeup.wait(0.05)  # finish() rings as soon as a slot frees
                continue
            job = self.queue.claim(self.config.pool, lease_seconds=self.config.lease_seconds)
            if job is not None:
                self.last_work = time.monotonic()
                self.start_job(job, cold=False)
                continue
            idle = time.monotonic() - self.last_work
            if busy == 0 and not self.config.keep_warm and self.config.idle_timeout and idle > self.config.idle_timeout:
                log.info("idle for %.0f s: exiting (scale to zero)", idle)
                return 0
            # The doorbell (a datagram from the dispatcher on every enqueue) wakes us at once;
            # the timeout is only the safety net for a lost datagram or a queue without doorbells.
            self.wakeup.wait(0.002 if idle < 0.05 else 0.25)
        return 0

    def open_doorbell(self) -> None:
        """A UDP socket on 127.0.0.1: any datagram means "there may be work"."""
        doorbell = self.doorbell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        doorbell.bind(("127.0.0.1", 0))
        self.record.doorbell = f"127.0.0.1:{doorbell.getsockname()[1]}"

        def listen() -> None:
            while not self.stopping.is_set():
                try:
                    doorbell.recv(64)
                except OSError:
                    return
                self.wakeup.set()

        threading.Thread(target=listen, name="doorbell", daemon=True).start()

    def _keep_lease(self, job: Job) -> None:
        while self._boot_job is job and not self.stopping.is_set():
            time.sleep(min(10.0, self.config.lease_seconds / 3))
            if self._boot_job is job:
                try:
                    self.queue.release(job, delay=self.config.lease_seconds)
                except Exception:  # noqa: BLE001
                    pass

    def restart_server(self) -> bool:
        """A crashed or UNHEALTHY cog server never recovers: fail what it held, start a new one."""
        self.restart_needed.clear()
        log.warning("restarting the cog server")
        self.fail_inflight("The model server crashed while running this prediction (Worker crashed).")
        if self.server:
            self.server.stop(grace=2)
        self.server_restarts += 1
        ok, reason = self.start_server(lambda line: None)
        if not ok:
            log.error("restart failed: %s", reason)
        return ok

    def shutdown(self) -> None:
        """SIGTERM/idle: finish in-flight work within the grace period, fail the rest with a reason."""
        self.stopping.set()
        self.record.state = "stopping"
        deadline = time.monotonic() + self.config.stop_grace
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.fail_inflight(self.stop_reason)
        if self.server:
            self.server.stop(grace=3)
        if self.httpd:
            self.httpd.shutdown()
        if self.doorbell:
            self.doorbell.close()
        self.stopped.set()
        try:
            self.state.delete_runner(self.id)
        except Exception:  # noqa: BLE001
            pass


class InputFetchError(Exception):
    """A file input could not be fetched or served: the prediction fails with this message."""


_EXTENSIONS = {
    "audio/wav": ".wav",
    "audio/wave": ".wav",
    "audio/x-wav": ".wav",
    "audio/mp3": ".mp3",
    "image/jpeg": ".jpg",
    "text/plain": ".txt",
    "application/octet-stream": ".bin",
}


def _extension(mime: str) -> str:
    import mimetypes

    return _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"


def _safe_part(part: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(part))[:40] or "_"


Runner = Runner  # the domain record keeps this name; the process class is RunnerProcess
