"""The one place that speaks cog's HTTP API (cog 0.23 / coglet; see docs/cog-contract.md).

- `CogClient`: GET /health-check, PUT /{route}/{id} (sync: the answer is the prediction's end; or
  with `Prefer: respond-async` and a webhook), POST /{route}/{id}/cancel. `route` is
  `predictions`, or `trainings` for a server in train mode.
- `HealthResult`: the health-check body as a typed value (coglet always answers HTTP 200 and puts
  the state in the body: STARTING, READY, BUSY, SETUP_FAILED, UNHEALTHY, DEFUNCT).
- `CogUpdate`: one webhook cog sent about a prediction, parsed where it arrives (the loopback
  server) into a typed value; the runner's own outcomes (a refused input, a crash) use it too.

It depends on nothing but the standard library: the servers (`cog_server`, `external_server`),
the loopback server and the runner's loop all build on it, never the other way round.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cogplane.domain.status import Status

# Statuses reported by coglet's /health-check body.
STARTING = "STARTING"
READY = "READY"
BUSY = "BUSY"
SETUP_FAILED = "SETUP_FAILED"
UNHEALTHY = "UNHEALTHY"
DEFUNCT = "DEFUNCT"
# Statuses added here: the process has exited / wait_ready ran out of time.
EXITED = "EXITED"
TIMEOUT = "TIMEOUT"

FAILED_STATUSES = frozenset({SETUP_FAILED, UNHEALTHY, DEFUNCT, EXITED})
SERVING_STATUSES = frozenset({READY, BUSY})

# A prediction's statuses in cog's webhooks.
TERMINAL_COG = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)
WORKER_CRASHED = "Worker crashed"  # coglet's error when the model's worker process died


@dataclass(frozen=True)
class HealthResult:
    status: str
    setup_logs: str = ""
    error: str | None = None
    body: dict = field(default_factory=dict)

    @property
    def serving(self) -> bool:
        """READY or BUSY: the server accepts (or is running) predictions."""
        return self.status in SERVING_STATUSES

    @property
    def failed(self) -> bool:
        """A state the server never leaves: stop it and start a new one."""
        return self.status in FAILED_STATUSES

    @classmethod
    def from_body(cls, body: dict) -> HealthResult:
        status = str(body.get("status") or STARTING).upper()
        setup = body.get("setup") or {}
        setup_logs = setup.get("logs") or ""
        error = None
        if status == SETUP_FAILED:
            error = setup_logs or "setup failed"
        elif status in (UNHEALTHY, DEFUNCT):
            error = body.get("user_healthcheck_error") or f"cog server is {status}"
        return cls(status, setup_logs=setup_logs, error=error, body=body)


@dataclass(frozen=True)
class CogUpdate:
    """One state of a prediction as cog reports it in a webhook (or as the runner decides it)."""

    status: str
    output: Any = None
    logs: str | None = None
    error: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_COG

    @property
    def worker_crashed(self) -> bool:
        """coglet's worker died under this prediction: the server must be restarted."""
        return self.error == WORKER_CRASHED

    @classmethod
    def from_json(cls, body: Any) -> CogUpdate:
        """A webhook body (already decoded); ValueError if it is not a prediction object."""
        if not isinstance(body, dict):
            raise ValueError("a webhook body is a JSON object")
        metrics = body.get("metrics")
        logs = body.get("logs")
        return cls(
            status=str(body.get("status") or ""),
            output=body.get("output"),
            logs=logs if isinstance(logs, str) else None,
            error=body.get("error"),
            metrics=metrics if isinstance(metrics, dict) else {},
        )


@dataclass(frozen=True)
class Answer:
    """cog's answer to a request: its HTTP status (0: no answer at all) and body text."""

    status: int
    text: str

    @property
    def accepted(self) -> bool:
        return self.status in (200, 202)


class CogClient:
    """Requests to one cog server at host:port. Each request uses a new connection."""

    def __init__(self, host: str, port: int, route: str = "predictions") -> None:
        self.host = host
        self.port = port
        self.route = route

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float | None = 10,
    ) -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, response.read().decode(errors="replace"))
        finally:
            conn.close()

    def health(self, timeout: float = 1.0) -> HealthResult:
        """One GET /health-check. No answer (nothing listens yet, a bad body) means STARTING."""
        try:
            answer = self._request("GET", "/health-check", timeout=timeout)
            body = json.loads(answer.text)
            if not isinstance(body, dict):
                raise ValueError(f"not a JSON object: {answer.text[:200]}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return HealthResult(STARTING, error=f"health-check: {exc}")
        return HealthResult.from_body(body)

    def wait_ready(self, timeout: float | None = None, interval: float = 0.25) -> HealthResult:
        """Poll health until READY/BUSY or a failed state; TIMEOUT if `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.health(timeout=max(0.5, interval))
            if result.serving or result.failed:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                return HealthResult(
                    TIMEOUT,
                    setup_logs=result.setup_logs,
                    body=result.body,
                    error=f"cog server at {self.url} not ready after {timeout} s "
                    f"(last status {result.status}: {result.error or ''})",
                )
            time.sleep(interval)

    def predict(self, prediction_id: str, model_input: dict[str, Any], webhook: str, busy_for: float = 30.0) -> Answer:
        """Start a prediction asynchronously; its progress and result come to `webhook`.

        A 409 (every slot busy) is retried for up to `busy_for` seconds: the slot frees right after
        the previous prediction's terminal webhook, which is also when the runner sends the next."""
        body = {"id": prediction_id, "input": model_input, "webhook": webhook}
        return self._put(prediction_id, body, {"Prefer": "respond-async"}, timeout=10, busy_for=busy_for)

    def predict_sync(self, prediction_id: str, model_input: dict[str, Any], busy_for: float = 30.0) -> Answer:
        """Run a prediction and answer with its end (HTTP 200, the terminal prediction object): one
        request instead of a 202 and three webhooks (start, output, completed). No webhook at all:
        on cog 0.23 a sync PUT that names one takes about 3.4 ms longer even when no webhook is
        sent (0.8 against 4.2 ms, a model that prints nothing). It blocks until the prediction
        ends: no read timeout (a cancel, `cancel()` from another thread, ends it; so does stopping
        the server). The prediction's lines while it runs, and those of a failed or canceled one
        (cog's sync answer then has empty `logs`, cog-contract 4.5), are in the server's log
        (`CogServer.follow_logs`, `CogServer.prediction_logs`)."""
        body = {"id": prediction_id, "input": model_input}
        return self._put(prediction_id, body, {}, timeout=None, busy_for=busy_for)

    def _put(
        self, prediction_id: str, body: dict[str, Any], headers: dict[str, str], timeout: float | None, busy_for: float
    ) -> Answer:
        """PUT /{route}/{id}, retrying a 409 (every slot busy) for up to `busy_for` seconds; an
        Answer with status 0 if the server could not be reached or dropped the connection."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **headers}
        deadline = time.monotonic() + busy_for
        # cog frees a slot just after it answers the last prediction (cog-contract 4.8): a 1 ms
        # pause was enough there; the cap stays small, as a long back-off under load is a long tail
        delay = 0.001
        while True:
            try:
                answer = self._request("PUT", f"/{self.route}/{prediction_id}", data, headers, timeout)
            except (OSError, http.client.HTTPException) as exc:
                return Answer(0, str(exc))
            if answer.status == 409 and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
                continue
            return answer

    def cancel(self, prediction_id: str) -> bool:
        """Ask cog to cancel a prediction; False if it could not be asked (the server is gone)."""
        try:
            self._request("POST", f"/{self.route}/{prediction_id}/cancel", timeout=5)
        except (OSError, http.client.HTTPException):
            return False
        return True


def validation_message(text: str) -> str:
    """cog's 422 body (FastAPI's `detail` list) as one line: "Input validation failed: x: msg"."""
    try:
        detail = json.loads(text).get("detail")
        parts = [f"{'.'.join(str(x) for x in d.get('loc', [])[2:])}: {d.get('msg')}" for d in detail]
        return "Input validation failed: " + "; ".join(parts)
    except (ValueError, AttributeError, TypeError):
        return f"Input validation failed: {text[:500]}"
