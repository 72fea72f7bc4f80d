"""The runner's loop: claims a pool's jobs exactly once, drives a cog server, reports back.

One runner process (local) or ECS task (deployed) serves one pool. Flow per prediction: claim a
job -> the recorder's conditional write starting→processing (the exactly-once guard) -> the cog
client's `PUT /predictions/{id}`: sync where it can (`sync`: cog answers with the prediction's
end, its lines read from the server's log while it runs), else `Prefer: respond-async` with a webhook to the
loopback server -> the recorder records logs and growing output as they arrive, then the terminal
state with its metrics -> ack the job.

RunnerProcess only ties the parts together; each depends only on those below it:

    runner (this loop: claims, starts, sends, cancels, restarts, graceful stop)
      -> presence (the runner's record and heartbeats, job leases, the doorbell)
      -> boot (version, source, environment, weights, cog server) -> cog_server / external_server
      -> recorder (in-flight predictions, every write of their state)
      -> loopback (cog's webhooks, input serving, uploads) and inputs (file inputs to loopback URLs)
      -> cog_client (the one place that speaks cog's HTTP; CogUpdate, HealthResult)
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cogplane.domain.entities import Job, Prediction, Runner
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.strictjson import loads_lenient
from cogplane.domain.timefmt import parse, seconds_between
from cogplane.logs import prediction_context
from cogplane.sealing import scrub
from gpu_runner.boot import Boot, BootConfig, LogBuffer
from gpu_runner.cog_client import Answer, CogClient, CogUpdate, validation_message
from gpu_runner.cog_server import CogServer
from gpu_runner.external_server import DEFAULT_COG_URL
from gpu_runner.inputs import InputFetchError, Inputs
from gpu_runner.loopback import Loopback, address_towards
from gpu_runner.presence import Presence
from gpu_runner.recorder import InFlight, Recorder

if TYPE_CHECKING:
    from cogplane.wiring import Services

log = logging.getLogger("cogplane.runner")

EXIT_SETUP_FAILED = 3  # tells the dispatcher to back off before booting this pool again


class Workers:
    """Daemon threads kept for the next task once they finish one; a new thread starts only when
    none is idle, so a task never waits for another to end. Idle threads exit after `idle_s`."""

    def __init__(self, name: str, idle_s: float = 60.0) -> None:
        self.name = name
        self.idle_s = idle_s
        self.tasks: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = 0
        self.count = itertools.count(1)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self.lock:
            start = self.idle == 0
            if not start:
                self.idle -= 1  # that idle thread takes it
        self.tasks.put((fn, args))
        if start:
            threading.Thread(target=self._work, name=f"{self.name}-{next(self.count)}", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                task = self.tasks.get(timeout=self.idle_s)
            except queue.Empty:
                with self.lock:
                    if self.idle == 0:  # a task was promised to the idle threads: take it
                        continue
                    self.idle -= 1
                return
            if task is None:
                return
            fn, args = task
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - the task's own failure handling comes first
                log.exception("%s: a task failed", self.name)
            with self.lock:
                self.idle += 1

    def close(self) -> None:
        """Idle threads exit; busy ones exit after their task."""
        with self.lock:
            idle, self.idle = self.idle, 0
        for _ in range(idle):
            self.tasks.put(None)


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
    cog_url: str = DEFAULT_COG_URL
    # the port of the runner's webhook/upload server (0 = any); image tasks fix it (their cog was
    # once started with `--upload-url http://127.0.0.1:<port>/upload/`, still served for old tasks)
    http_port: int = 0
    ecs_metadata_uri: str = ""  # ECS's task metadata endpoint (cold-boot phases; empty off ECS)
    cog_sync: bool = True  # cog answers a prediction with its end where it can (RunnerProcess.sync)
    runner_id: str = field(default_factory=lambda: "r-" + uuid.uuid4().hex[:12])


class RunnerProcess:
    """One runner: serves one pool until idle, stopped, or its model cannot be set up."""

    def __init__(self, services: Services, config: RunnerConfig) -> None:
        self.services = services
        self.state = services.state
        self.queue = services.queue
        self.blobs = services.blobs
        self.clock = services.clock
        self.config = config
        self.id = config.runner_id
        self.started_mono = time.monotonic()
        self.started_at = self.clock.now()
        self.stopping = threading.Event()
        self.stop_reason = "The runner was stopped before the prediction finished."
        self.restart_needed = threading.Event()
        self.wakeup = threading.Event()  # rung by the doorbell and by finished predictions
        self.loopback: Loopback | None = None  # cog's webhook target and input server (run() starts it)
        # The threads that wait on cog's sync answers, kept between predictions (each keeps its
        # SQLite connection); one more is started only when none is idle (a canceled prediction's
        # thread may still wait on cog after its slot was given up), so none ever waits its turn.
        self.predictors = Workers("predict")
        self.last_work = time.monotonic()
        self.boot = Boot(
            services,
            BootConfig(
                pool=config.pool,
                runner_id=self.id,
                work_root=config.work_root,
                env_cache=config.env_cache,
                cog_url=config.cog_url,
                setup_timeout=config.setup_timeout,
                spawned_at=config.spawned_at,
                ecs_metadata_uri=config.ecs_metadata_uri,
            ),
        )
        self.recorder = Recorder(
            services,
            runner_id=self.id,
            training=self.boot.training,
            on_done=self._done,
            upload_key=lambda url: self.loopback.blob_key(url) if self.loopback else None,
        )
        self.inputs = Inputs(services, serve=self._serve_blob, folder=self.recorder.blob_folder)
        self.presence = Presence(
            services,
            Runner(
                id=self.id,
                pool=config.pool,
                pid=os.getpid(),
                host=socket.gethostname(),
                started_at=self.started_at,
                heartbeat_at=self.started_at,
            ),
            held=lambda: [flight.job for flight in self.recorder.flights()],
            lease_seconds=config.lease_seconds,
            heartbeat_seconds=config.heartbeat_seconds,
        )

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
        with prediction_context(job.prediction_id):  # the lines logged starting it name it (cogplane.logs)
            self._start_job(job, cold)

    def _start_job(self, job: Job, cold: bool) -> None:
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
            metrics.update(self.boot.cold_metrics)
        cold = metrics.get("boot_time", 0.0) + metrics.get("setup_time", 0.0)
        metrics["queue_time"] = round(max(0.0, waited - cold), 4)
        taken = self.recorder.start(job, prediction, metrics, now=now, on_held=self.presence.beat_now.set)
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
        cog = self.boot.cog
        if cog is None or self.loopback is None:
            raise RuntimeError("send() before the cog server and the loopback server")
        try:
            model_input = self.model_input({**(prediction.input or {}), **flight.secrets}, prediction.id)
        except InputFetchError as exc:
            self.recorder.fail(prediction.id, str(exc))
            return
        if self.sync:
            self.predictors.submit(self._predict_sync, cog, flight, model_input)
            return
        answer = cog.predict(prediction.id, model_input, self.loopback.webhook_url(prediction.id))
        if not answer.accepted:
            self._refused(flight, answer)

    @property
    def sync(self) -> bool:
        """Whether cog answers each prediction with its end (`CogClient.predict_sync`, in a thread
        per prediction) rather than a 202 and webhooks: for the cog servers the runner starts
        itself (it reads their log), when the output is not an iterator (an iterator's output
        is streamed by cog's `output` webhooks) and for predictions, not trainings.
        COGPLANE_COG_SYNC=0 turns it off."""
        return (
            self.config.cog_sync
            and isinstance(self.boot.server, CogServer)
            and not self.boot.training
            and not self.boot.iterator_output
        )

    def _predict_sync(self, cog: CogClient, flight: InFlight, model_input: dict[str, Any]) -> None:
        with prediction_context(flight.prediction_id):
            try:
                self._run_sync(cog, flight, model_input)
            except Exception as exc:  # noqa: BLE001 - one prediction's bug must not leave it running
                log.exception("prediction %s: the runner failed", flight.prediction_id)
                self.recorder.fail(flight.prediction_id, f"The runner could not finish the prediction: {exc}")

    def _run_sync(self, cog: CogClient, flight: InFlight, model_input: dict[str, Any]) -> None:
        prediction_id = flight.prediction_id
        answer = cog.predict_sync(prediction_id, model_input)
        if self.recorder.get(prediction_id) is not flight:
            return  # already ended: canceled and given up on, failed by a restart or the stop
        if answer.status == 0 and self.stopping.is_set():
            return  # the stop dropped it: shutdown() fails it with the stop's reason
        if answer.status != 200:
            self._refused(flight, answer)
            return
        try:
            update = CogUpdate.from_json(loads_lenient(answer.text))
        except ValueError:
            update = CogUpdate(status="")
        if not update.terminal:
            self._refused(flight, answer)
            return
        if update.status != Status.SUCCEEDED and not update.logs:
            server = self.boot.server
            if isinstance(server, CogServer):  # cog's sync answer of a failure has no logs
                update = replace(update, logs=server.prediction_logs(prediction_id))
        self.recorder.finish(prediction_id, update)

    def _refused(self, flight: InFlight, answer: Answer) -> None:
        """cog did not take the prediction (or, sync, did not answer with its end): fail it with
        cog's reason; anything but a refused input means the server needs a restart."""
        if answer.status == 422:
            reason = validation_message(answer.text)
        elif answer.status == 0:
            reason = f"The model server stopped answering ({answer.text[:500]})."
        else:
            reason = f"The model server refused the prediction ({answer.status}): {answer.text[:500]}"
        reason = scrub(reason, flight.secrets) or reason
        self.recorder.fail(flight.prediction_id, reason)
        if answer.status != 422:
            self.restart_needed.set()
            self.wakeup.set()

    def model_input(self, value: dict[str, Any], prediction_id: str = "") -> dict[str, Any]:
        """The input cog gets (gpu_runner.inputs): file inputs become URLs of the loopback server."""
        return self.inputs.prepare(self.boot.run_schema, value, prediction_id)

    @property
    def concurrency(self) -> int:
        return self.boot.concurrency

    def boot_server(self, waiting: str | None) -> tuple[bool, str]:
        """Boot (gpu_runner.boot); its lines go to the prediction that waits for it, if any."""
        with prediction_context(waiting):
            ok, reason = self.boot.run(LogBuffer(self.recorder.append_logs, waiting))
        self.recorder.schema = self.boot.run_schema
        self.recorder.iterator = self.boot.iterator_output
        return ok, reason

    def _serve_blob(self, key: str, name: str, prediction_id: str) -> str:
        if self.loopback is None:
            raise RuntimeError("no loopback server to serve the blob")
        return self.loopback.serve_blob(key, name, prediction_id)

    def _done(self, flight: InFlight, update: CogUpdate) -> None:
        """A held prediction ended (recorded by the recorder): its job is done, its slot free.
        A crashed worker is marked first: the failure is already visible, so new work may be queued
        at once, and the loop must not send it to the dead server while the ack (a network call on
        the deployed shape) is on its way. The loop is woken before the ack, for the same reason:
        the next job is claimed and sent while the ack travels (deployed: an SQS DeleteMessage)."""
        if update.worker_crashed:
            self.restart_needed.set()
        if self.loopback:
            self.loopback.release(flight.prediction_id)
        self.last_work = time.monotonic()
        self.wakeup.set()
        self.queue.ack(flight.job)

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
                    with prediction_context(flight.prediction_id):
                        log.info("prediction %s: canceling it in cog", flight.prediction_id)
                        self.cog_cancel(flight.prediction_id)
            time.sleep(0.2)

    def follow_logs(self, every: float = 0.5) -> None:
        """The lines of sync predictions while they run (cog sends them no webhook), read from the
        cog server's log every `every` seconds, as often as cog's throttled `logs` webhooks come."""
        lines: dict[str, str] = {}
        while not self.stopping.is_set() or len(self.recorder):
            time.sleep(every)
            server = self.boot.server
            if not self.sync or not isinstance(server, CogServer) or not len(self.recorder):
                lines.clear()
                continue
            new = server.follow_logs()
            held = self.recorder.ids()
            for prediction_id in held:
                if new.get(prediction_id):
                    lines[prediction_id] = lines.get(prediction_id, "") + new[prediction_id]
                    update = CogUpdate(status=Status.PROCESSING, logs=lines[prediction_id])
                    with prediction_context(prediction_id):
                        self.recorder.progress(prediction_id, update)
            for prediction_id in set(lines) - set(held):
                del lines[prediction_id]

    def cog_cancel(self, prediction_id: str) -> None:
        if self.boot.cog is not None:
            self.boot.cog.cancel(prediction_id)

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
            self.blobs,
            on_update=self.recorder.update,
            on_upload=self.recorder.store_output,
            port=self.config.http_port,
            host=address_towards(self.config.cog_url),  # 127.0.0.1 but for an image on a bridge
        ).start()
        self.presence.start(ring=self.wakeup.set)
        try:
            return self._run()
        finally:
            self.shutdown()

    def _run(self) -> int:
        # Claim first, so the prediction that caused this cold boot shows the boot in its logs;
        # its lease is extended while we boot (environment builds can take minutes).
        first = self.queue.claim(self.config.pool, lease_seconds=self.config.lease_seconds)
        with self.presence.leased(first):
            ok, reason = self.boot_server(first.prediction_id if first else None)
        if self.stopping.is_set():  # stopped while booting: the job waits for the next runner
            if first is not None:
                self.queue.release(first, delay=0)
            return 0 if ok else EXIT_SETUP_FAILED
        if not ok:
            log.error("%s", reason)
            self.fail_queued(reason, first)
            return EXIT_SETUP_FAILED
        self.presence.set_state("ready")
        threading.Thread(target=self.watch_cancels, name="cancels", daemon=True).start()
        threading.Thread(target=self.follow_logs, name="logs", daemon=True).start()
        if first is not None:
            self.start_job(first, cold=True)
        self.last_work = time.monotonic()
        while not self.stopping.is_set():
            server = self.boot.server
            if self.restart_needed.is_set() or (server and not server.alive()):
                if not self.restart_server():
                    return EXIT_SETUP_FAILED
            self.wakeup.clear()
            busy = len(self.recorder)
            if busy >= self.boot.concurrency:
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

    def restart_server(self) -> bool:
        """A crashed or UNHEALTHY cog server never recovers: fail what it held, start a new one."""
        self.restart_needed.clear()
        log.warning("restarting the cog server")
        self.recorder.fail_all("The model server crashed while running this prediction (Worker crashed).")
        ok, reason = self.boot.restart()
        if not ok:
            log.error("restart failed: %s", reason)
        return ok

    def shutdown(self) -> None:
        """SIGTERM/idle: finish in-flight work within the grace period, fail the rest with a reason."""
        self.stopping.set()
        self.presence.record.state = "stopping"
        deadline = time.monotonic() + self.config.stop_grace
        while len(self.recorder) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.recorder.fail_all(self.stop_reason)
        self.boot.stop(grace=3)
        self.predictors.close()
        if self.loopback:
            self.loopback.stop()
        self.presence.close()


Runner = Runner  # the domain record keeps this name; the process class is RunnerProcess
