"""Predictions: create (validate, store, enqueue), read, list, cancel, wait."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cogplane.domain import pools, strictjson, transitions
from cogplane.domain.durations import parse_duration
from cogplane.domain.entities import Account, Job, Model, Page, Prediction, Version
from cogplane.domain.errors import Conflict, InvalidRequest, NotFound, Unavailable, Unprocessable
from cogplane.domain.status import TERMINAL
from cogplane.domain.timefmt import add_seconds
from cogplane.logs import set_prediction
from cogplane.ports import Clock, Dispatcher, IdSource, JobQueue, StateStore
from cogplane.schema import file_inputs
from cogplane.sealing import SecretBox, split_secrets
from cogplane.services.accounts import AccountService

if TYPE_CHECKING:
    from cogplane.services.files import FileService

EVENTS = ("start", "output", "logs", "completed")
MAX_CANCEL_AFTER = 24 * 3600  # Cancel-After above a day is refused (predictions are kept an hour by default)
NOT_FOUND = "The requested resource could not be found."


def needs_safety_check(model: Model, source: str, disabled: bool) -> bool:
    """The model's `safety_checker` setting: `web` checks web predictions; `all` checks API ones
    too, unless the request set `disable_safety_checker` (the web form never does)."""
    level = getattr(model, "safety_checker", "off") or "off"
    if level == "all":
        return source == "web" or not disabled
    return level == "web" and source == "web"


class PredictionService:
    def __init__(
        self,
        state: StateStore,
        queue: JobQueue,
        dispatcher: Dispatcher,
        clock: Clock,
        ids: IdSource,
        *,
        retention_seconds: int = 3600,
        files: FileService | None = None,
        allow_networks: list[str] | None = None,
        timeout_seconds: float = 1800,
        access: AccountService | None = None,
        start_deadline_seconds: float | None = 900,
    ) -> None:
        self.state = state
        self.completions: Any = None  # a CompletionHub where ends are announced (single machine)
        self.access = access or AccountService(state, clock)
        self.queue = queue
        self.dispatcher = dispatcher
        self.clock = clock
        self.ids = ids
        self.retention_seconds = retention_seconds
        self.files = files
        self.allow_networks = list(allow_networks or [])  # netguard allow-list: webhooks, http(s) inputs
        self.timeout_seconds = timeout_seconds
        self.start_deadline_seconds = start_deadline_seconds
        self.secret_box: Callable[[], SecretBox] | None = None  # set by Services
        self.refusing: str | None = None  # set while the platform stops: creates answer 503
        # The prediction and its job in one transaction where the adapters can (set by Services)
        self.atomic: Callable[[], AbstractContextManager[Any]] = nullcontext

    # --- create -------------------------------------------------------------------------
    def create(
        self,
        viewer: Account,
        model: Model,
        version: Version,
        body: dict[str, Any],
        *,
        source: str = "api",
        cancel_after: str | None = None,
        deployment: str | None = None,
        pool: str | None = None,
        timeout: float | None = None,
        hardware: str | None = None,
        kind: str = "prediction",
        destination: str | None = None,
    ) -> Prediction:
        from cogplane.domain.validation import validate_input

        if self.refusing:
            raise Unavailable(self.refusing)
        raw_input = body.get("input", {})
        if raw_input is None:
            raw_input = {}
        if not isinstance(raw_input, dict):
            raise Unprocessable("`input` must be a JSON object.", field="input")
        if not strictjson.is_strict(raw_input):  # the API's parser refuses these; other roads (web) too
            raise InvalidRequest(
                "`input` must be strict JSON: finite numbers, valid Unicode, nested at most "
                f"{strictjson.MAX_DEPTH} deep.",
                field="input",
            )
        clean = validate_input(version.openapi_schema, raw_input)
        self._check_file_inputs(viewer, version.openapi_schema, clean)
        # Secret inputs are stored as `**********`; the values travel encrypted in the job only.
        clean, secret_values = split_secrets(version.openapi_schema, clean)

        webhook = body.get("webhook")
        events: Any  # from the request body; checked below: a list of EVENTS, or None
        if webhook is None and isinstance(body.get("webhook_completed"), str):
            webhook = body["webhook_completed"]  # legacy field some clients still send
            events = ["completed"]
        else:
            events = body.get("webhook_events_filter")
        if webhook is not None:
            parsed = urlparse(webhook) if isinstance(webhook, str) else None
            if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise Unprocessable("`webhook` must be an absolute http(s) URL.", field="webhook")
            self._check_target(webhook, "webhook")
        if events is not None:
            if not isinstance(events, list) or any(e not in EVENTS for e in events):
                raise Unprocessable(
                    "`webhook_events_filter` must be a list of: start, output, logs, completed.",
                    field="webhook_events_filter",
                )
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise Unprocessable("`stream` must be a boolean.", field="stream")
        disable_safety = body.get("disable_safety_checker", False)
        if not isinstance(disable_safety, bool):
            raise Unprocessable("`disable_safety_checker` must be a boolean.", field="disable_safety_checker")

        now = self.clock.now()
        deadline = None
        if cancel_after is not None:
            try:
                deadline = add_seconds(now, parse_duration(cancel_after, maximum=MAX_CANCEL_AFTER))
            except ValueError as exc:
                raise InvalidRequest(
                    f"Invalid Cancel-After header {cancel_after[:100]!r}: use a duration like 30s, 5m or "
                    "1h30m, at most 24h."
                ) from exc
        prediction = Prediction(
            id=self.ids.prediction_id(),
            owner=viewer.username,
            model=model.full_name,
            version=version.id,
            input=clean,
            created_at=now,
            source=source,
            deadline=deadline,
            deployment=deployment,
            webhook=webhook,
            webhook_events_filter=list(events) if events is not None else None,
            stream=stream,
            pool=pool or pools.for_version(version.id),
            remove_at=add_seconds(now, self.retention_seconds) if source == "api" else None,
            timeout=timeout or self.timeout_seconds,
            start_by=add_seconds(now, self.start_deadline_seconds) if self.start_deadline_seconds else None,
            hardware=hardware or model.hardware or "cpu",
            safety={"checked": False, "flagged": []}
            if kind == "prediction" and needs_safety_check(model, source, disable_safety)
            else None,
            kind=kind,
            destination=destination,
            blob_dir=secrets.token_hex(16),  # output URLs name this random folder, never the id
        )
        set_prediction(prediction.id)  # this request's log lines name it from here on (cogplane.logs)
        sealed = self._seal(prediction.id, secret_values) if secret_values else None
        self._store(prediction, Job(prediction_id=prediction.id, pool=prediction.pool, enqueued_at=now, sealed=sealed))
        self.dispatcher.wake(prediction.pool)
        return prediction

    def _store(self, prediction: Prediction, job: Job) -> None:
        """The prediction and its job: one transaction on one machine (neither is stored without
        the other, and a nonblocking create's WouldBlock can only come before both)."""
        with self.atomic():
            self.state.create_prediction(prediction)
            try:
                self.queue.enqueue(job)
            except Exception as exc:  # never leave a prediction that nothing will ever run
                self._fail(prediction.id, f"Could not queue the prediction: {exc}")
                raise

    def _seal(self, prediction_id: str, secrets: dict[str, Any]) -> str:
        if self.secret_box is None:
            raise RuntimeError("secret inputs need a key (PredictionService.secret_box)")
        return self.secret_box().seal(prediction_id, secrets)

    def _check_target(self, url: str, field: str) -> None:
        """No server-side request to private, loopback or link-local addresses (unless allowed)."""
        from cogplane.netguard import check_url

        try:
            check_url(url, self.allow_networks)
        except Exception as exc:  # noqa: BLE001 - every refusal is the caller's bad input
            raise Unprocessable(f"`{field}` is not allowed: {exc}", field=field) from exc

    def _check_file_inputs(self, viewer: Account, schema: dict[str, Any], clean: dict[str, Any]) -> None:
        for name, is_list in file_inputs(schema).items():
            if name not in clean or clean[name] is None:
                continue
            values = clean[name] if is_list else [clean[name]]
            for value in values:
                if not isinstance(value, str) or not value.startswith(("http://", "https://", "data:")):
                    raise Unprocessable(
                        f"{name}: a file input must be an http(s) URL, a data: URI or a /v1/files URL; "
                        "local paths are not accepted.",
                        title="Input validation failed",
                        field=name,
                    )
                own_file = False
                if self.files is not None:
                    try:
                        own_file = self.files.check_input(viewer, value)
                    except Unprocessable as exc:
                        raise Unprocessable(
                            f"{name}: {exc.detail}", title="Input validation failed", field=name
                        ) from exc
                if not own_file and value.startswith(("http://", "https://")):
                    from cogplane.netguard import BlockedURL, check_url

                    try:  # the runner fetches it (and checks again); refuse what it would refuse now
                        check_url(value, self.allow_networks)
                    except BlockedURL as exc:
                        raise Unprocessable(
                            f"{name}: this URL cannot be used as an input: {exc}.",
                            title="Input validation failed",
                            field=name,
                        ) from exc

    def _fail(self, prediction_id: str, reason: str) -> None:
        try:
            transitions.fail(reason, now=self.clock.now()).apply(self.state, prediction_id)
        except Exception:  # noqa: BLE001, S110 - best effort (the store may be what failed); the expirer catches what is left
            pass

    # --- read ---------------------------------------------------------------------------
    def get(self, viewer: Account | None, prediction_id: str) -> Prediction:
        """Predictions are private to the account that made them (an org's: to its members too;
        shared web predictions excepted)."""
        prediction = self.state.get_prediction(prediction_id)
        if prediction is None or (not prediction.shared and not self.access.can_act_for(viewer, prediction.owner)):
            raise NotFound(NOT_FOUND)
        return prediction

    def get_own(self, viewer: Account, prediction_id: str) -> Prediction:
        prediction = self.state.get_prediction(prediction_id)
        if prediction is None or not self.access.can_act_for(viewer, prediction.owner):
            raise NotFound(NOT_FOUND)
        return prediction

    def list(
        self, viewer: Account, *, created_after: str | None, created_before: str | None, cursor: str | None, limit: int
    ) -> Page[Prediction]:
        return self.state.list_predictions(
            viewer.username, created_after=created_after, created_before=created_before, cursor=cursor, limit=limit
        )

    # --- cancel -------------------------------------------------------------------------
    def cancel(self, viewer: Account, prediction_id: str) -> Prediction:
        """Queued: canceled at once. Running: canceled now; the runner stops the model run.
        Terminal: returned unchanged."""
        prediction = self.get_own(viewer, prediction_id)
        for _ in range(5):  # retry when a runner moved it meanwhile
            if prediction.status in TERMINAL:
                return prediction
            try:
                return transitions.cancel(prediction, now=self.clock.now()).apply(self.state, prediction_id)
            except Conflict:  # a conditional write lost a race: re-read and retry
                prediction = self.get_own(viewer, prediction_id)
        return prediction

    # --- wait ---------------------------------------------------------------------------
    def wait(self, prediction_id: str, timeout: float) -> Prediction:
        """Until terminal or `timeout` seconds; returns the last state seen. With a completion hub
        (`completions`: the single-machine API process) it sleeps until the writer of the end says
        so; otherwise it polls."""
        if self.completions is not None:
            return self._wait_notified(prediction_id, timeout)
        started = time.monotonic()
        deadline = started + timeout
        while True:
            prediction = self.state.get_prediction(prediction_id)
            if prediction is None:
                raise NotFound(NOT_FOUND)
            now = time.monotonic()
            remaining = deadline - now
            if prediction.status in TERMINAL or remaining <= 0:
                return prediction
            # Warm predictions finish within tens of ms: poll every ms then (a read costs ~50 µs
            # on SQLite), then back off to 50 ms for long runs.
            elapsed = now - started
            delay = 0.001 if elapsed < 0.1 else min(0.05, elapsed / 10)
            time.sleep(min(delay, remaining))

    def _wait_notified(self, prediction_id: str, timeout: float) -> Prediction:
        deadline = time.monotonic() + timeout
        hub = self.completions
        with hub.watching(prediction_id) as waiter:
            while True:
                prediction = self.state.get_prediction(prediction_id)
                if prediction is None:
                    raise NotFound(NOT_FOUND)
                remaining = deadline - time.monotonic()
                if prediction.status in TERMINAL or remaining <= 0:
                    return prediction
                hub.wait(waiter, min(remaining, hub.fallback_seconds))

    async def wait_async(self, prediction_id: str, timeout: float, *, unended: bool = False) -> Prediction:
        """`wait` for an event loop: no thread is held while waiting (only with a hub; without
        one, the polling `wait` runs in a worker thread). `unended`: the caller has just seen it
        not yet ended (its create), so it is not read before the first wait: a notice that came
        in between is among the hub's recent ones and ends that wait at once."""
        if self.completions is None:
            import anyio.to_thread

            return await anyio.to_thread.run_sync(self.wait, prediction_id, timeout)
        deadline = time.monotonic() + timeout
        hub = self.completions
        with hub.watching(prediction_id) as waiter:
            if unended:
                await hub.wait_async(waiter, min(timeout, hub.fallback_seconds))
            while True:
                # a SQLite read by primary key (tens of µs): cheaper than a hop to a worker thread
                prediction = self.state.get_prediction(prediction_id)
                if prediction is None:
                    raise NotFound(NOT_FOUND)
                remaining = deadline - time.monotonic()
                if prediction.status in TERMINAL or remaining <= 0:
                    return prediction
                await hub.wait_async(waiter, min(remaining, hub.fallback_seconds))
