"""A cog server the runner does not start: an image version's model container, which serves cog
on localhost:5000 (`COG_URL`) next to the runner (a sidecar in the same ECS task).

It offers the part of CogServer's interface the runner uses (`host`, `port`, `url`, `alive`,
`health`, `wait_ready`, `start`, `stop`). `start`/`stop` do nothing to the server: its lifetime is
the container's (ECS stops the task when the essential model container exits). A connection that
is refused means "not up yet" (STARTING), as the container may still be pulling or importing.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

from gpu_runner.cog_server import STARTING, TIMEOUT, HealthResult, _health_from_body

DEFAULT_COG_URL = "http://localhost:5000"


class ExternalCogServer:
    def __init__(self, url: str = DEFAULT_COG_URL):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"COG_URL must be http://HOST:PORT, not {url!r}")
        self.host = parts.hostname
        self.port: int | None = parts.port or 80
        self.started_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None

    def start(self) -> ExternalCogServer:
        self.started_at = time.monotonic()
        return self

    def alive(self) -> bool:
        # the model container's life is ECS's business: a dead server is noticed by the
        # predictions sent to it (and ECS stops the task when that essential container exits)
        return True

    def health(self, timeout: float = 1.0) -> HealthResult:
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                conn.request("GET", "/health-check")
                body = json.loads(conn.getresponse().read())
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return HealthResult(STARTING, error=f"health-check: {exc}")
        return _health_from_body(body)

    def wait_ready(self, timeout: float | None = None, interval: float = 0.25) -> HealthResult:
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

    def stop(self, grace: float = 5.0) -> int | None:
        return None
