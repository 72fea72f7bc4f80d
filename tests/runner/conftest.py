"""Shared by the runner suites: the example models, a polling helper and the cog-only environment."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cogplane.environments import ensure_environment
from gpu_runner.cog_server import read_cog_config

REPO = Path(__file__).resolve().parents[2]
MODELS = {
    "hello": REPO / "examples" / "hello",
    "setup_fails": REPO / "tests" / "fixtures" / "runner_models" / "setup_fails",
    "crash": REPO / "tests" / "fixtures" / "runner_models" / "crash",
    "slow": REPO / "tests" / "fixtures" / "runner_models" / "slow",
}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cog-only environment that all these models share (built once per test session)."""
    cache = tmp_path_factory.getbasetemp() / "envs"
    return ensure_environment(read_cog_config(MODELS["hello"]), MODELS["hello"], cache)


class FakeCog:
    """A tiny in-process stand-in for cog's HTTP API (health, async predictions with webhooks,
    cancel), for the runner's unit tests. It records every request it gets.

    `health` is the body of GET /health-check; `refuse` (status, body) answers every PUT;
    `script(request)` returns the webhook bodies to post for a prediction (default: processing,
    then succeeded with output "hello <prompt>"); `hold` keeps a prediction running until it is
    canceled (its last webhook is then `canceled`)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.health: dict = {"status": "READY", "setup": {"logs": "[coglet::setup] loaded\n"}}
        self.refuse: tuple[int, str] | None = None
        self.hold = False
        self.requests: list[tuple[str, str, dict | None]] = []
        self.headers: list[dict[str, str]] = []  # of each request, in order
        self.canceled: set[str] = set()
        self.script: Callable[[dict], list[dict]] = self._default_script
        self._cancel_events: dict[str, threading.Event] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: object) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _json(self) -> dict | None:
                length = int(self.headers.get("content-length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(("GET", self.path, None))
                self._send(200, fake.health)

            def do_PUT(self) -> None:  # noqa: N802
                body = self._json()
                fake.requests.append(("PUT", self.path, body))
                fake.headers.append(dict(self.headers))
                if fake.refuse is not None:
                    return self._send(*fake.refuse)
                assert body is not None
                event = fake._cancel_events.setdefault(body["id"], threading.Event())
                self._send(202, {"id": body["id"], "status": "starting"})
                threading.Thread(target=fake._run, args=(body, event), daemon=True).start()

            def do_POST(self) -> None:  # noqa: N802
                self._json()
                fake.requests.append(("POST", self.path, None))
                prediction_id = self.path.split("/")[2]
                fake.canceled.add(prediction_id)
                fake._cancel_events.setdefault(prediction_id, threading.Event()).set()
                self._send(200, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def _default_script(request: dict) -> list[dict]:
        prompt = (request.get("input") or {}).get("prompt", "")
        return [
            {"status": "processing", "logs": "working\n", "output": None},
            {
                "status": "succeeded",
                "logs": "working\n",
                "output": f"hello {prompt}",
                "metrics": {"predict_time": 0.01},
            },
        ]

    def _post(self, url: str, body: dict) -> None:
        import urllib.request

        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            urllib.request.urlopen(request, timeout=10).read()
        except OSError:  # nobody listens (a test that only looks at the requests)
            pass

    def _run(self, request: dict, canceled: object) -> None:
        steps = self.script(request)
        if self.hold:
            self._post(request["webhook"], steps[0])
            canceled.wait(30)  # type: ignore[attr-defined]
            self._post(request["webhook"], {"status": "canceled", "logs": steps[0].get("logs")})
            return
        for body in steps:
            self._post(request["webhook"], body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_cog() -> Iterator[FakeCog]:
    cog = FakeCog()
    yield cog
    cog.close()
