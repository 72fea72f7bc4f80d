"""Cold-boot phases from a fake ECS task metadata endpoint (a local HTTP server, its URL given as
the runner's settings give it: ECS_CONTAINER_METADATA_URI_V4 -> RunnerSettings.ecs_metadata_uri)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpu_runner.ecs_metadata import ENV, boot_phases, parse_time, task_metadata
from gpu_runner.settings import RunnerSettings
from tests.conftest import ECS_SPAWNED, ECS_TASK


@pytest.fixture
def metadata_endpoint(monkeypatch):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_GET(self):  # noqa: N802
            body = json.dumps(ECS_TASK).encode() if self.path == "/v4/abc/task" else b"{}"
            self.send_response(200 if self.path == "/v4/abc/task" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(ENV, f"http://127.0.0.1:{server.server_address[1]}/v4/abc")
    yield RunnerSettings().ecs_metadata_uri
    server.shutdown()
    server.server_close()


def test_times_parse_with_nanoseconds_and_zero_values():
    assert parse_time("2026-03-01T12:00:00.123456789Z") - parse_time("2026-03-01T12:00:00Z") == pytest.approx(0.123456)
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time(None) is None and parse_time("x") is None


def test_phases_come_from_the_task_metadata(metadata_endpoint):
    metadata = task_metadata(metadata_endpoint)
    assert metadata["TaskARN"].endswith("/abc")
    assert boot_phases(ECS_SPAWNED, metadata) == {"capacity_time": 90.25, "image_pull_time": 40.5}
    assert boot_phases(None, metadata) == {"image_pull_time": 40.5}


def test_no_phases_off_ecs(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert RunnerSettings().ecs_metadata_uri == ""
    assert task_metadata("") is None and boot_phases(ECS_SPAWNED, None) == {}
    assert task_metadata("http://127.0.0.1:9/nothing") is None  # unreachable: no phases, no error
