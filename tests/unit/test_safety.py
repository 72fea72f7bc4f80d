"""The safety service's plumbing on the local adapters: which outputs are images, how the checker's
answer maps back onto the output, and that its failures withhold the output. (The real classifier
runs in tests/system/test_safety_e2e.py; here the checker's prediction is finished by the test.)"""

from __future__ import annotations

import base64
import threading
import time

import pytest

from cogplane.services.presenters import blob_ref
from cogplane.services.safety import SafetyCheckError, data_uri_bytes, image_outputs
from tests.conftest import make_bundle

SCHEMA = {
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "properties": {
                    "images": {"type": "array", "items": {"type": "string", "format": "uri"}},
                    "threshold": {"type": "number"},
                },
                "required": ["images"],
            },
            "Output": {"type": "object"},
        }
    }
}


@pytest.fixture(autouse=True)
def short_wait(services):
    services.safety.timeout_seconds = 20  # a broken test fails in seconds, not the default 15 min


@pytest.fixture
def checker(services):
    account = services.accounts.ensure_account("cogplane", type="organization")
    services.catalog.create_model(account, {"owner": "cogplane", "name": "safety-checker"})
    services.catalog.push_version(
        account,
        "cogplane",
        "safety-checker",
        bundle=make_bundle({"x": "y"}),
        schema=SCHEMA,
        config={},
        cog_version="0.23.1",
    )
    return account


def outputs(services):
    services.blobs.put("predictions/p1/1/a.png", b"png-a", content_type="image/png")
    services.blobs.put("predictions/p1/2/notes.txt", b"text", content_type="text/plain")
    services.blobs.put("predictions/p1/3/b.jpg", b"jpg-b", content_type="image/jpeg")
    return [
        blob_ref("predictions/p1/1/a.png"),
        blob_ref("predictions/p1/2/notes.txt"),
        "plain string",
        blob_ref("predictions/p1/3/b.jpg"),
    ]


def finish_checker(services, output=None, status="succeeded", seen=None):
    """Play the checker's runner: wait for its prediction, record its input, finish it."""

    def run():
        for _ in range(500):
            found = [
                p
                for p in services.state.list_predictions(
                    "cogplane", created_after=None, created_before=None, cursor=None, limit=10
                ).items
                if p.status == "starting"
            ]
            if found:
                p = found[0]
                if seen is not None:
                    seen["input"] = p.input
                    seen["files"] = [services.state.get_file(u.rsplit("/", 1)[-1]) for u in p.input["images"]]
                services.state.update_prediction(p.id, {"status": "processing"})
                services.state.update_prediction(
                    p.id, {"status": status, "output": output, "error": None if status == "succeeded" else "boom"}
                )
                return
            time.sleep(0.01)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_data_uris_and_image_outputs(services):
    assert data_uri_bytes("data:image/png;base64," + base64.b64encode(b"xy").decode()) == b"xy"
    assert data_uri_bytes("data:image/png,xy") is None and data_uri_bytes("https://x/y.png") is None
    assert data_uri_bytes("data:image/png;base64,!!") is None
    out = outputs(services)
    assert [(i, ct) for i, _, ct in image_outputs(out, services.blobs)] == [(0, "image/png"), (3, "image/jpeg")]
    assert [i for i, _, _ in image_outputs(out[0], services.blobs)] == [0]  # a single file output
    assert image_outputs({"a": out[0]}, services.blobs) == []  # objects are not looked into
    assert image_outputs(None, services.blobs) == []


def test_a_flagged_image_is_replaced_and_the_uploads_removed(services, checker):
    black = "data:image/jpeg;base64," + base64.b64encode(b"black-jpeg").decode()
    seen: dict = {}
    thread = finish_checker(services, {"nsfw": [0.01, 0.93], "flagged": [1], "replacements": [black]}, seen=seen)
    result = services.safety.check("p1", outputs(services))
    thread.join()
    assert seen["input"]["threshold"] == 0.5 and len(seen["input"]["images"]) == 2
    assert [f.content_type for f in seen["files"]] == ["image/png", "image/jpeg"]
    assert all(services.state.get_file(f.id) is None for f in seen["files"])  # removed after the check
    assert result.flagged == [3]
    assert result.output[:3] == outputs(services)[:3]
    key = result.output[3].removeprefix("cogplane-blob:")
    assert key == "predictions/p1/safety/3/b.jpg"
    assert services.blobs.get(key) == b"black-jpeg" and services.blobs.head(key).content_type == "image/jpeg"
    assert "output 3 (b.jpg) was flagged (score 0.93)" in result.logs and result.seconds > 0


def test_nothing_to_check_needs_no_checker(services):
    result = services.safety.check("p1", "just text")
    assert result.output == "just text" and result.flagged == [] and "no image outputs" in result.logs


def test_failures_raise_and_leave_no_uploads(services, checker):
    thread = finish_checker(services, status="failed")
    with pytest.raises(SafetyCheckError, match="did not succeed: boom"):
        services.safety.check("p1", outputs(services))
    thread.join()
    assert services.state.list_files("cogplane", cursor=None, limit=10).items == []
    thread = finish_checker(services, {"nsfw": [0.9, 0.9], "flagged": [0, 1], "replacements": ["nope", "nope"]})
    with pytest.raises(SafetyCheckError, match="no replacement"):
        services.safety.check("p1", outputs(services))
    thread.join()


def test_a_missing_checker_is_an_error(services):
    with pytest.raises(SafetyCheckError, match="not installed"):
        services.safety.check("p1", outputs(services))
