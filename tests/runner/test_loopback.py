"""gpu_runner.loopback: cog's webhooks arrive as typed CogUpdates, file inputs are served to cog
under tokens that end with their prediction, and old image tasks' uploads are stored."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from cogplane.services.presenters import blob_ref
from gpu_runner.cog_client import CogUpdate
from gpu_runner.loopback import Loopback
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
