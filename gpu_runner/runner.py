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

import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cogplane.builds import BuildLog
from cogplane.bundle import unpack_bundle
from cogplane.cogconfig import ConfigError, effective_concurrency
from cogplane.domain.entities import Job, Prediction, Runner, Version
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import parse, seconds_between
from cogplane.schema import is_iterator_output, training_view
from cogplane.sealing import scrub
from gpu_runner.cog_client import SETUP_FAILED, CogClient, CogUpdate, validation_message
from gpu_runner.cog_server import CogServer, clean_setup_error, model_setup_lines, write_schema
from gpu_runner.environment import EnvironmentBuildError, build_record, ensure_environment
from gpu_runner.external_server import DEFAULT_COG_URL, ExternalCogServer
from gpu_runner.inputs import InputFetchError, Inputs
from gpu_runner.loopback import Loopback
from gpu_runner.recorder import InFlight, Recorder

log = logging.getLogger("cogplane.runner")

EXIT_SETUP_FAILED = 3  # tells the dispatcher to back off before booting this pool again


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
        self.runner.recorder.append_logs(self.prediction_id, text)


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
        self.loopback: Loopback | None = None  # cog's webhook target and input server (run() starts it)
        self.last_work = time.monotonic()
        # a `t-` pool runs trainings: cog in train mode, `/trainings/{id}`, TrainingInput
        self.training = config.pool.startswith("t-")
        self.route = "trainings" if self.training else "predictions"
        self.recorder = Recorder(
            services,
            runner_id=self.id,
            training=self.training,
            on_done=self._done,
            upload_key=lambda url: self.loopback.blob_key(url) if self.loopback else None,
        )
        self.inputs = Inputs(services, serve=self._serve_blob, folder=self.recorder.blob_folder)

    # --- state helpers --------------------------------------------------------------------
    def write_record(self) -> None:
        self.record.in_flight = self.recorder.ids()
        self.record.heartbeat_at = self.clock.now()
        self.state.put_runner(self.record)

    def heartbeat(self) -> None:
        self.write_record()
        for job in [flight.job for flight in self.recorder.flights()]:  # keep the leases of the jobs we hold
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
        self.recorder.schema = self.run_schema
        self.recorder.iterator = self.iterator_output
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
        assert self.version and self.loopback
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
            self.recorder.fail_unstarted(job.prediction_id, reason)
            self.queue.ack(job)

    def start_job(self, job: Job, cold: bool) -> None:
        prediction = self.state.get_prediction(job.prediction_id)
        if prediction is None or prediction.status != Status.STARTING:
            self.queue.ack(job)  # canceled while queued, or already taken: nothing to run
            return
        now = self.clock.now()
        if prediction.deadline and parse(now) >= parse(prediction.deadline):
            self.recorder.abort_unstarted(
                prediction.id, "The prediction did not start before its Cancel-After deadline.", now=now
            )
            self.queue.ack(job)
            return
        waited = seconds_between(prediction.created_at, now)
        metrics: dict[str, Any] = {}
        if cold:
            metrics.update(self.cold_metrics)
        cold = metrics.get("boot_time", 0.0) + metrics.get("setup_time", 0.0)
        metrics["queue_time"] = round(max(0.0, waited - cold), 4)
        taken = self.recorder.start(job, prediction, metrics, now=now, on_held=self.beat_now.set)
        if taken is None:  # canceled, or taken by another runner, since we read it
            self.queue.ack(job)
            return
        flight, prediction = taken
        if job.sealed:  # secret inputs: decrypted here, kept in memory for this run only
            try:
                flight.secrets = self.services.secret_box().open(prediction.id, job.sealed)
            except Exception as exc:  # noqa: BLE001 - SealError, or no key configured
                log.error("could not open the secret inputs of %s: %s", prediction.id, exc)
                self.recorder.fail(prediction.id, f"The prediction's secret inputs could not be read: {exc}")
                return
        try:
            self.send(prediction, flight)
        except Exception as exc:  # noqa: BLE001 - one prediction's bug must not take the runner down
            log.exception("could not start prediction %s", prediction.id)
            self.recorder.fail(prediction.id, f"The runner could not start the prediction: {exc}")

    def send(self, prediction: Prediction, flight: InFlight) -> None:
        assert self.cog and self.loopback
        hook = self.loopback.webhook_url(prediction.id)
        try:
            model_input = self.model_input({**(prediction.input or {}), **flight.secrets}, prediction.id)
        except InputFetchError as exc:
            self.recorder.fail(prediction.id, str(exc))
            return
        answer = self.cog.predict(prediction.id, model_input, hook)
        if answer.accepted:
            return
        if answer.status == 422:
            reason = validation_message(answer.text)
        else:
            reason = f"The model server refused the prediction ({answer.status or 'no answer'}): {answer.text[:500]}"
        reason = scrub(reason, flight.secrets) or reason
        self.recorder.fail(prediction.id, reason)
        if answer.status != 422:
            self.restart_needed.set()

    def model_input(self, value: dict[str, Any], prediction_id: str = "") -> dict[str, Any]:
        """The input cog gets (gpu_runner.inputs): file inputs become URLs of the loopback server."""
        return self.inputs.prepare(self.run_schema, value, prediction_id)

    def _serve_blob(self, key: str, name: str, prediction_id: str) -> str:
        assert self.loopback
        return self.loopback.serve_blob(key, name, prediction_id)

    def _done(self, flight: InFlight, update: CogUpdate) -> None:
        """A held prediction ended (recorded by the recorder): its job is done, its slot free."""
        if self.loopback:
            self.loopback.release(flight.prediction_id)
        self.queue.ack(flight.job)
        self.last_work = time.monotonic()
        self.wakeup.set()
        if update.worker_crashed:
            self.restart_needed.set()

    def watch_cancels(self) -> None:
        """A prediction canceled (or timed out) in the state store is stopped in cog within ~0.2 s."""
        while not self.stopping.is_set() or len(self.recorder):
            for flight in self.recorder.flights():
                if flight.cancel_sent_at is not None:
                    if time.monotonic() - flight.cancel_sent_at > 30:  # cog never confirmed: give up on it
                        self.recorder.finish(flight.prediction_id, CogUpdate(status=Status.CANCELED))
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
        """Serve the pool until idle, stopped (`request_stop`) or the model cannot be set up; the
        exit code. Installs no signal handlers: the entry point (`__main__`) routes them here."""
        self.loopback = Loopback(
            self.blobs, on_update=self.recorder.update, on_upload=self.recorder.store_output, port=self.config.http_port
        ).start()
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
            busy = len(self.recorder)
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
        self.recorder.fail_all("The model server crashed while running this prediction (Worker crashed).")
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
        while len(self.recorder) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.recorder.fail_all(self.stop_reason)
        if self.server:
            self.server.stop(grace=3)
        if self.loopback:
            self.loopback.stop()
        if self.doorbell:
            self.doorbell.close()
        self.stopped.set()
        try:
            self.state.delete_runner(self.id)
        except Exception:  # noqa: BLE001
            pass


Runner = Runner  # the domain record keeps this name; the process class is RunnerProcess
