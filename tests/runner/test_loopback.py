"""gpu_runner.loopback: cog's webhooks arrive as typed CogUpdates, file inputs are served to cog
under tokens that end with their prediction, and old image tasks' uploads are stored."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from cogplane.services.presenters import blob_ref
from gpu_runner.cog_client import CogUpdate
from gpu_runner.loopback import Loopback, address_towards
from tests.runner.conftest import wait_until


class Calls:
    def __init__(self) -> None:
        self.updates: list[tuple[str, CogUpdate]] = []
        self.uploads: list[tuple[str, str, bytes, str | None]] = []

    def upload(self, prediction_id: str, name: str, data: bytes, content_type: str | None) -> str:
        self.uploads.append((prediction_id, name, data, content_type))
        return blob_ref(f"predictions/d/1/{name}")


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def loopback(services, calls: Calls) -> Iterator[Loopback]:
    server = Loopback(
        services.blobs, on_update=lambda pid, u: calls.updates.append((pid, u)), on_upload=calls.upload
    ).start()
    yield server
    server.stop()


def _request(loopback: Loopback, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", loopback.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_webhooks_are_parsed_where_they_arrive(loopback: Loopback, calls: Calls) -> None:
    url = loopback.webhook_url("p1")
    assert url == f"http://127.0.0.1:{loopback.port}/webhook/p1"
    body = json.dumps({"status": "succeeded", "output": "hi", "logs": "a\n", "metrics": {"predict_time": 1}})
    response, _ = _request(loopback, "POST", "/webhook/p1", body.encode())
    assert response.status == 200  # answered at once; handed on right after
    assert wait_until(lambda: len(calls.updates) == 1)
    assert calls.updates == [
        ("p1", CogUpdate(status="succeeded", output="hi", logs="a\n", metrics={"predict_time": 1}))
    ]
    # a model's NaN is read leniently; what is not a prediction object is refused
    response, _ = _request(loopback, "POST", "/webhook/p2", b'{"status": "processing", "output": NaN}')
    assert response.status == 200 and wait_until(lambda: len(calls.updates) == 2)
    assert calls.updates[-1][1].status == "processing"
    assert _request(loopback, "POST", "/webhook/p3", b"[1, 2]")[0].status == 400
    assert _request(loopback, "POST", "/webhook/p3", b"{not json")[0].status == 400
    assert _request(loopback, "POST", "/elsewhere", b"{}")[0].status == 404
    assert len(calls.updates) == 2


def test_inputs_are_served_until_their_prediction_ends(services, loopback: Loopback) -> None:
    services.blobs.put("uploads/a/cat.png", b"PNG!", content_type="image/png")
    url = loopback.serve_blob("uploads/a/cat.png", "../../cat picture.png", "p1")
    path = url[len(loopback.base) :]
    assert path.startswith("/input/") and path.endswith("/cat%20picture.png")  # no folders from the name
    response, data = _request(loopback, "GET", path)
    assert response.status == 200 and data == b"PNG!" and response.getheader("Content-Type") == "image/png"
    assert _request(loopback, "GET", "/input/not-a-token/cat.png")[0].status == 404
    loopback.release("p1")
    assert _request(loopback, "GET", path)[0].status == 404


def test_uploads_are_stored_and_map_back(loopback: Loopback, calls: Calls) -> None:
    response, _ = _request(
        loopback, "PUT", "/upload/out.txt", b"data", {"x-prediction-id": "p1", "Content-Type": "text/plain"}
    )
    assert response.status == 201 and calls.uploads == [("p1", "out.txt", b"data", "text/plain")]
    location = response.getheader("Location")
    assert loopback.blob_key(location) == "predictions/d/1/out.txt"
    assert loopback.blob_key("https://elsewhere/blob/x") is None


def test_on_a_shared_bridge_every_path_lies_under_a_secret(services, calls: Calls) -> None:
    """Image versions on EC2 (bridge networking): the runner serves cog on its bridge address,
    where other containers of the instance can connect. What they cannot guess is the prefix, so
    they cannot post a prediction's webhooks nor reach its inputs; cog, given the URLs, can."""
    server = Loopback(
        services.blobs,
        on_update=lambda pid, u: calls.updates.append((pid, u)),
        on_upload=calls.upload,
        host="0.0.0.0",  # noqa: S104 - stands in for the runner's bridge address
    ).start()
    try:
        prefix = server.prefix
        assert len(prefix) == 33 and server.base == f"http://0.0.0.0:{server.port}{prefix}"
        assert server.webhook_url("p1") == f"{server.base}/webhook/p1"
        body = json.dumps({"status": "succeeded", "output": "hi"}).encode()
        assert _request(server, "POST", "/webhook/p1", body)[0].status == 404  # no prefix: refused
        assert _request(server, "POST", "/" + "0" * 32 + "/webhook/p1", body)[0].status == 404
        assert calls.updates == []
        assert _request(server, "POST", f"{prefix}/webhook/p1", body)[0].status == 200
        assert wait_until(lambda: len(calls.updates) == 1) and calls.updates[0][0] == "p1"
        services.blobs.put("uploads/a/cat.png", b"PNG!", content_type="image/png")
        url = server.serve_blob("uploads/a/cat.png", "cat.png", "p1")
        path = url[len(f"http://0.0.0.0:{server.port}") :]
        assert path.startswith(f"{prefix}/input/")
        assert _request(server, "GET", path)[1] == b"PNG!"
        assert _request(server, "GET", path[len(prefix) :])[0].status == 404
    finally:
        server.stop()


def test_the_runner_serves_cog_where_cog_reaches_it() -> None:
    """127.0.0.1 where cog shares the runner's namespace (source versions, Fargate images); the
    local address of the route towards the model container otherwise (here: a loopback name)."""
    assert address_towards("http://localhost:5000") == "127.0.0.1"
    assert address_towards("http://127.0.0.1:5000") == "127.0.0.1"
    assert address_towards("http://[::1]:5000") == "127.0.0.1"
    # a name that is not loopback resolves through /etc/hosts (the task's link) and routes
    assert address_towards("http://127.0.0.2:5000") == "127.0.0.1"  # loopback range: not shared
    with pytest.raises(OSError):
        address_towards("http://no-such-container.invalid:5000", timeout=0)
    # towards another host: this machine's own address on the route there (where it has one)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.123", 9))
            own = sock.getsockname()[0]
    except OSError:
        return
    assert address_towards("http://192.0.2.123:5000") == own != "127.0.0.1"
