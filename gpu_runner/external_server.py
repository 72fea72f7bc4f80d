"""A cog server the runner does not start: an image version's model container, which serves cog
at `COG_URL` next to the runner (a sidecar in the same ECS task): http://model:5000 through the
task's link on EC2 (bridge networking), http://127.0.0.1:5000 on Fargate (one namespace).

It offers the part of CogServer's interface the runner uses (`host`, `port`, `url`, `alive`,
`health`, `wait_ready`, `client`, `start`, `stop`). `start`/`stop` do nothing to the server: its
lifetime is the container's (ECS stops the task when the essential model container exits). A
connection that is refused means "not up yet" (STARTING), as the container may still be pulling or
importing. All of its HTTP goes through `gpu_runner.cog_client`.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from gpu_runner.cog_client import CogClient, HealthResult

DEFAULT_COG_URL = "http://localhost:5000"


class ExternalCogServer:
    def __init__(self, url: str = DEFAULT_COG_URL) -> None:
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

    def client(self, route: str = "predictions") -> CogClient:
        if self.port is None:
            raise RuntimeError("the model's cog server has no port yet (start() first)")
        return CogClient(self.host, self.port, route)

    def start(self) -> ExternalCogServer:
        self.started_at = time.monotonic()
        return self

    def alive(self) -> bool:
        # the model container's life is ECS's business: a dead server is noticed by the
        # predictions sent to it (and ECS stops the task when that essential container exits)
        return True

    def health(self, timeout: float = 1.0) -> HealthResult:
        return self.client().health(timeout=timeout)

    def wait_ready(self, timeout: float | None = None, interval: float = 0.25) -> HealthResult:
        return self.client().wait_ready(timeout=timeout, interval=interval)

    def stop(self, grace: float = 5.0) -> int | None:
        return None
