"""The runner's recorder: the predictions this runner holds (in flight) and every write of their
state — the start (starting → processing, the exactly-once guard), logs and growing output while
cog runs them, and their end (succeeded, failed, canceled; aborted before they started), with
metrics, the safety check of image outputs and a training's new version.

Like cog's own PredictTask (one prediction's state, fed by typed events), it is fed `CogUpdate`s
and knows nothing of HTTP, of cog's process or of the queue: what happens when a prediction ends
(ack its job, stop serving its inputs, restart a crashed server) is the `on_done` callback's.

File outputs reach it as `data:` URIs in cog's output (cog runs without `--upload-url`, so a list
keeps the model's order: `map_output`), go to the blob store, and are recorded as blob references
that the API turns into signed URLs.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import mimetypes
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from cogplane.domain import transitions
from cogplane.domain.entities import Job, Prediction
from cogplane.domain.errors import Conflict, NotFound
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import seconds_between
from cogplane.logs import about_prediction
from cogplane.schema import output_schema, resolve_prop
from cogplane.sealing import scrub
from cogplane.services.presenters import blob_ref
from gpu_runner.cog_client import CogUpdate

log = logging.getLogger("cogplane.runner")

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


class Recorder:
    """The in-flight predictions of one runner and the writes of their state."""

    def __init__(
        self,
        services: Any,
        *,
        runner_id: str,
        training: bool = False,
        on_done: Callable[[InFlight, CogUpdate], None] = lambda flight, update: None,
        upload_key: Callable[[str], str | None] = lambda url: None,
    ) -> None:
        """`on_done(flight, update)` runs once a held prediction has ended and is recorded;
        `upload_key(url)` maps a URL of the loopback server's uploads back to its blob key."""
        self.services = services
        self.state = services.state
        self.blobs = services.blobs
        self.clock = services.clock
        self.runner_id = runner_id
        self.training = training  # a training's success makes the destination's new version
        self.on_done = on_done
        self.upload_key = upload_key
        self.schema: dict[str, Any] = {}  # what this runner runs (a training pool's: its training view)
        self.iterator = False  # the output is an iterator: streamed while it grows
        self.inflight: dict[str, InFlight] = {}
        self.lock = threading.Lock()
        self.counter = itertools.count(1)

    # --- what is held ------------------------------------------------------------------------
    def get(self, prediction_id: str) -> InFlight | None:
        with self.lock:
            return self.inflight.get(prediction_id)

    def flights(self) -> list[InFlight]:
        with self.lock:
            return list(self.inflight.values())

    def ids(self) -> list[str]:
        with self.lock:
            return list(self.inflight)

    def __len__(self) -> int:
        with self.lock:
            return len(self.inflight)

    # --- before cog runs it ------------------------------------------------------------------
    @about_prediction
    def append_logs(self, prediction_id: str, text: str) -> None:
        """Lines for a prediction that has not ended (boot lines of the one that waits)."""
        try:
            current = self.state.get_prediction(prediction_id)
            if current is None or current.status in TERMINAL:
                return
            transitions.amend({"logs": (current.logs or "") + text}, status=current.status).apply(
                self.state, prediction_id
            )
        except (Conflict, NotFound):
            pass

    @about_prediction
    def fail_unstarted(self, prediction_id: str, reason: str) -> None:
        """A queued prediction this runner will never run (its model could not be set up)."""
        try:
            transitions.fail(reason, now=self.clock.now(), from_=[Status.STARTING]).apply(self.state, prediction_id)
        except (Conflict, NotFound):
            pass

    @about_prediction
    def abort_unstarted(self, prediction_id: str, reason: str, now: str | None = None) -> None:
        """A queued prediction whose Cancel-After deadline passed before it could start."""
        try:
            transitions.abort(now=now or self.clock.now(), error=reason).apply(self.state, prediction_id)
        except (Conflict, NotFound):
            pass

    def start(
        self,
        job: Job,
        prediction: Prediction,
        metrics: dict[str, Any],
        *,
        now: str | None = None,
        on_held: Callable[[], None] = lambda: None,
    ) -> tuple[InFlight, Prediction] | None:
        """Take the prediction: starting → processing, by this runner. None if someone else took it
        (or it was canceled) first: then it is not held. `on_held` runs once it is held, before the
        write (the heartbeat records it: a dead runner's predictions are found by its record)."""
        flight = InFlight(
            job=job,
            prediction_id=prediction.id,
            created_at=prediction.created_at,
            started_mono=time.monotonic(),
            log_prefix=prediction.logs or "",
            metrics=metrics,
            iterator=self.iterator,
            safety=prediction.safety is not None,
            blob_dir=prediction.blob_dir or prediction.id,
        )
        with self.lock:
            if prediction.id in self.inflight:  # a duplicate delivery of a job we hold
                return None
            self.inflight[prediction.id] = flight
        on_held()
        try:
            started = transitions.start(now=now or self.clock.now(), runner_id=self.runner_id).apply(
                self.state, prediction.id
            )
        except (Conflict, NotFound):
            with self.lock:
                self.inflight.pop(prediction.id, None)
            return None
        log.info("prediction %s: processing", prediction.id)
        return flight, started

    # --- while cog runs it -------------------------------------------------------------------
    @about_prediction
    def update(self, prediction_id: str, update: CogUpdate) -> None:
        """One webhook from cog: its end, or its progress."""
        if update.terminal:
            self.finish(prediction_id, update)
        else:
            self.progress(prediction_id, update)

    def progress(self, prediction_id: str, update: CogUpdate) -> None:
        flight = self.get(prediction_id)
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
            return  # cog's webhooks while processing often carry nothing new: no write
        flight.written.update(changes)
        try:
            transitions.amend(changes, status=Status.PROCESSING).apply(self.state, prediction_id)
        except (Conflict, NotFound):
            pass

    # --- its end -----------------------------------------------------------------------------
    def fail(self, prediction_id: str, reason: str) -> None:
        self.finish(prediction_id, CogUpdate(status=Status.FAILED, error=reason))

    def fail_all(self, reason: str) -> None:
        for prediction_id in self.ids():
            self.fail(prediction_id, reason)

    @about_prediction
    def finish(self, prediction_id: str, update: CogUpdate) -> None:
        flight = self.get(prediction_id)
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
            "error": scrub(clean_error(update.error), flight.secrets) if status == Status.FAILED else None,
        }
        if flight.safety:
            self.check_safety(prediction_id, changes)
            changes["completed_at"] = now = self.clock.now()
            metrics["total_time"] = round(seconds_between(flight.created_at, now), 6)
        if self.training and status == Status.SUCCEEDED:
            changes = self._trained(prediction_id, changes)
        status = changes.pop("status")
        try:  # the safety check or the training may have turned it into a failure
            transitions.finish(status, changes).apply(self.state, prediction_id)
            log.info("prediction %s: %s (predict_time %.3f s)", prediction_id, status, metrics["predict_time"])
        except (Conflict, NotFound):  # canceled, timed out or failed by someone else first: that state stands
            log.info("prediction %s: not recorded as %s: it had already ended", prediction_id, status)
        with self.lock:
            self.inflight.pop(prediction_id, None)
        flight.done.set()
        self.on_done(flight, update)

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
                status=Status.FAILED,
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
                "status": Status.FAILED,
                "output": None,
                "error": f"The trained version could not be created: {exc}",
            }

    # --- output files ------------------------------------------------------------------------
    def blob_folder(self, prediction_id: str | None) -> str:
        """`predictions/{blob_dir}/` of an in-flight prediction: output URLs never name its id."""
        flight = self.get(prediction_id or "")
        return f"predictions/{flight.blob_dir if flight else 'unclaimed-' + uuid.uuid4().hex}/"

    def store_output(self, prediction_id: str, name: str, data: bytes, content_type: str | None) -> str:
        """Put one output file in the blob store; its blob reference."""
        key = f"{self.blob_folder(prediction_id)}{next(self.counter)}/{name}"
        self.blobs.put(key, data, content_type=content_type)
        return blob_ref(key)

    def map_output(self, value: Any, flight: InFlight | None = None) -> Any:
        """cog's output with every file in it stored in the blob store (as a blob reference).

        Source versions' cog servers run without `--upload-url`: coglet then puts each file in the
        output as a `data:` URI, in the model's order (with an upload URL it uploads the files of a
        list in parallel and lists them in the order the uploads finish). Each one is stored here,
        named by its place in the output (`output.png`, `output_0.png`, ...; a data URI carries no
        file name). A `data:` string where the schema says plain `string` is the model's own text
        and stays as it is. Upload URLs (`/blob/...`, from image versions' cog) map to their blobs."""
        return self._map_output(value, output_schema(self.schema), (), flight)

    def _map_output(self, value: Any, node: dict, path: tuple, flight: InFlight | None) -> Any:
        if isinstance(node, dict) and "$ref" in node:
            node = resolve_prop(self.schema, node)
        node = node if isinstance(node, dict) else {}
        if isinstance(value, str):
            uploaded = self.upload_key(value)
            if uploaded is not None:
                return blob_ref(uploaded)
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
    return _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"


def _safe_part(part: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(part))[:40] or "_"
