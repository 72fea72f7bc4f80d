"""The stream function's entry point, run the way the Lambda Web Adapter runs it: the layer's
/opt/bootstrap execs "$LAMBDA_TASK_ROOT/$_HANDLER" with the function's env, then polls
AWS_LWA_READINESS_CHECK_PATH on 127.0.0.1:$PORT until it answers, then relays requests to it.
Here the state store is the local backend (the SQLite file this test writes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from functions.stream import server
from tests.api.conftest import create_prediction, parse_sse

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLER = "functions/stream/run.sh"  # infra.constants.STREAM_HANDLER (tests/infra checks they agree)
BOOTSTRAP = 'exec -- "${LAMBDA_TASK_ROOT}/${_HANDLER}"'  # what the LWA layer's /opt/bootstrap does
READY_WITHIN_S = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def stream_function(settings):
    """The entry point as a process, with the env the stack gives the function (backend: local)."""
    port = _free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # python3
        "HOME": os.environ.get("HOME", "/tmp"),
        "LAMBDA_TASK_ROOT": str(REPO_ROOT),
        "_HANDLER": HANDLER,
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_READINESS_CHECK_PATH": server.HEALTH_PATH,
        "PORT": str(port),
        "COGPLANE_BACKEND": "local",
        "COGPLANE_HOME": str(settings.home),
        "COGPLANE_PUBLIC_URL": settings.public_url,
    }
    proc = subprocess.Popen(
        ["/bin/bash", "-c", BOOTSTRAP], env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:  # LWA's readiness check: poll until the path answers
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                ready = httpx.get(base + server.HEALTH_PATH, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the stream server never became ready"
                time.sleep(0.1)
        yield base, ready
    finally:
        proc.terminate()  # Lambda sends SIGTERM at shutdown
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def finished(client, services, schema):
    from tests.api.conftest import push

    schema["components"]["schemas"]["Output"] = {
        "type": "array",
        "items": {"type": "string"},
        "x-cog-array-type": "iterator",
    }
    version = push(client, "alice", "streamer", schema, files={"cog.yaml": "predict: p.py:P\n"})
    body = create_prediction(client, version)
    services.state.update_prediction(
        body["id"], {"status": "processing", "logs": "step 1\n", "output": ["Hello", " world"]}
    )
    services.state.update_prediction(body["id"], {"status": "succeeded"})
    return body


def test_the_handler_script_is_executable():
    assert os.access(REPO_ROOT / HANDLER, os.X_OK), f"chmod 755 {HANDLER}: /opt/bootstrap execs it"


def test_stream_entry_point_serves_the_readiness_check_and_a_finished_stream(finished, stream_function):
    base, ready = stream_function
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}
    pid = finished["id"]
    token = finished["urls"]["stream"].rsplit("/", 1)[-1]  # the function opens tokens the API made
    for path in (f"/v1/streams/{token}", f"/v1/files/streams/{token}"):
        with httpx.stream("GET", base + path, headers={"Accept": "text/event-stream"}, timeout=10) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            text = r.read().decode()
        assert text.startswith(": hi\n\n")
        _, events = parse_sse(text)
        assert [e["data"] for e in events if e["event"] == "output"] == ["Hello", " world"]
        assert "".join(e["data"] for e in events if e["event"] == "logs") == "step 1\n"
        assert events[-1]["event"] == "done" and events[-1]["data"] == "{}"
    assert httpx.get(f"{base}/v1/streams/nope", timeout=5).status_code == 404
    for path in (f"/v1/predictions/{pid}/stream", f"/v1/files/streams/{pid}", f"/v1/streams/{pid}"):
        assert httpx.get(base + path, timeout=5).status_code == 404  # the id opens nothing


def test_stream_entry_point_answers_nothing_but_streams(finished, stream_function):
    """The Function URL has no auth and no throttling: the rest of the API is not reachable there."""
    base, _ = stream_function
    headers = {"Authorization": "Bearer r8_test-token-0123456789abcdef"}
    assert httpx.get(f"{base}/v1/predictions/{finished['id']}", headers=headers, timeout=5).status_code == 404
    assert httpx.get(f"{base}/v1/account", headers=headers, timeout=5).status_code == 404
    r = httpx.post(f"{base}/v1/predictions", headers=headers, json={"version": "x", "input": {}}, timeout=5)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{base}/", timeout=5).status_code == 404


def test_stream_routes_only_filter():
    ok = server.STREAM_PATHS.match
    assert ok("/v1/streams/abc") and ok("/v1/files/streams/abc")
    assert not ok("/v1/predictions/abc") and not ok("/v1/files/abc") and not ok("/v1/predictions/a/b/stream")
    assert not ok("/v1/predictions/abc/stream")  # the old id-derived route is gone


def test_stream_function_logs_json_lines_through_the_root_handler(monkeypatch):
    """Like the other functions (cogplane.logs): one JSON object per line; uvicorn's own loggers
    propagate to that handler (no log_config of uvicorn's), at COGPLANE_LOG_LEVEL."""
    import io
    import json
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    called: dict = {}
    monkeypatch.setattr(server.uvicorn, "run", lambda *args, **kwargs: called.update(kwargs))
    monkeypatch.setenv("COGPLANE_LOG_LEVEL", "error")
    try:
        server.main()
        assert called["log_config"] is None
        (handler,) = root.handlers
        assert root.level == logging.ERROR
        out = io.StringIO()
        handler.setStream(out)  # type: ignore[attr-defined]
        logging.getLogger("uvicorn.error").error("Exception in ASGI application")
        line = json.loads(out.getvalue())
        assert line["service"] == "stream" and line["message"] == "Exception in ASGI application"
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
