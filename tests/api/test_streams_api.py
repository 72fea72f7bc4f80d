"""SSE (docs/replicate-api.md §3), collections, model examples, netguard at create time — via TestClient."""

from __future__ import annotations

import json
import threading
import time

import pytest

from functions.api.routers import streams
from tests.api.conftest import create_prediction, parse_sse, push


@pytest.fixture
def iterator_version(client, schema):
    schema["components"]["schemas"]["Output"] = {
        "type": "array",
        "items": {"type": "string"},
        "x-cog-array-type": "iterator",
        "x-cog-array-display": "concatenate",
    }
    return push(client, "alice", "streamer", schema, files={"cog.yaml": "predict: p.py:P\n"})


def test_stream_of_a_finished_iterator_prediction(app, client, services, iterator_version):
    body = create_prediction(client, iterator_version)
    services.state.update_prediction(
        body["id"], {"status": "processing", "logs": "line 1\nline 2\n", "output": ["Hello", " wor", "ld\nnext"]}
    )
    services.state.update_prediction(body["id"], {"status": "succeeded"})
    from fastapi.testclient import TestClient

    anon = TestClient(app)  # a capability URL: no Authorization (as JS sends it)
    r = anon.get(body["urls"]["stream"], headers={"Accept": "text/event-stream"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith(": hi\n\n")
    comments, events = parse_sse(r.text)
    assert all("id" in e for e in events)
    assert {e["event"] for e in events} <= {"output", "logs", "error", "done"}
    assert [e["data"] for e in events if e["event"] == "output"] == ["Hello", " wor", "ld\nnext"]
    assert "".join(e["data"] for e in events if e["event"] == "logs") == "line 1\nline 2\n"
    assert events[-1] == {"event": "done", "id": events[-1]["id"], "data": "{}"}
    # with a bearer header too (Python sends its own)
    assert parse_sse(client.get(body["urls"]["stream"]).text)[1][-1]["event"] == "done"


def test_stream_follows_a_running_prediction_piece_by_piece(client, services, iterator_version):
    body = create_prediction(client, iterator_version)
    pid = body["id"]

    def model():
        time.sleep(0.2)
        services.state.update_prediction(pid, {"status": "processing", "logs": "a\n", "output": ["one "]})
        time.sleep(0.3)
        services.state.update_prediction(pid, {"logs": "a\nb\n", "output": ["one ", "two "]})
        time.sleep(0.3)
        services.state.update_prediction(pid, {"status": "failed", "error": "boom"})

    threading.Thread(target=model, daemon=True).start()
    with client.stream("GET", body["urls"]["stream"]) as r:
        text = "".join(r.iter_text())
    _, events = parse_sse(text)
    names = [e["event"] for e in events]
    assert [e["data"] for e in events if e["event"] == "output"] == ["one ", "two "]
    assert "".join(e["data"] for e in events if e["event"] == "logs") == "a\nb\n"
    assert names[-2:] == ["error", "done"]
    assert json.loads(events[-2]["data"]) == {"detail": "boom"}
    assert json.loads(events[-1]["data"]) == {"reason": "error"}
    assert len({e["id"] for e in events}) == len(events)


def test_stream_true_gives_any_model_a_stream_url_with_the_final_output(client, services, version):
    body = create_prediction(client, version, stream=True)
    assert "/v1/streams/" in body["urls"]["stream"] and body["id"] not in body["urls"]["stream"]
    plain = create_prediction(client, version)
    assert "stream" not in plain["urls"]
    client.post(f"/v1/predictions/{body['id']}/cancel")
    _, events = parse_sse(client.get(body["urls"]["stream"]).text)
    assert [(e["event"], json.loads(e["data"])) for e in events] == [("done", {"reason": "canceled"})]
    other = create_prediction(client, version, stream=True)
    services.state.update_prediction(other["id"], {"status": "processing"})
    services.state.update_prediction(other["id"], {"status": "succeeded", "output": "hello x"})
    _, events = parse_sse(client.get(other["urls"]["stream"]).text)
    assert [(e["event"], e["data"]) for e in events] == [("output", "hello x"), ("done", "{}")]


def test_file_models_stream_under_v1_files(client, services, schema):
    schema["components"]["schemas"]["Output"] = {
        "type": "array",
        "items": {"type": "string", "format": "uri"},
        "x-cog-array-type": "iterator",
    }
    v = push(client, "alice", "frames", schema, files={"cog.yaml": "predict: p.py:Q\n"})
    body = create_prediction(client, v)
    token = services.stream_tokens().token(body["id"])
    assert body["urls"]["stream"] == f"https://cogplane.test/v1/files/streams/{token}"
    services.blobs.put("predictions/x/1/a.png", b"png", content_type="image/png")
    services.state.update_prediction(
        body["id"], {"status": "processing", "output": ["cogplane-blob:predictions/x/1/a.png"]}
    )
    services.state.update_prediction(body["id"], {"status": "succeeded"})
    _, events = parse_sse(client.get("/v1/files/streams/" + token).text)
    assert events[0]["event"] == "output" and events[0]["data"].startswith("https://cogplane.test/v1/blobs/")


def test_stream_of_unknown_prediction_is_404_and_removed_data_times_out(client, services, version, monkeypatch):
    assert client.get("/v1/streams/nosuch0000000000000000000").status_code == 404
    body = create_prediction(client, version, stream=True)
    services.state.update_prediction(body["id"], {"status": "canceled", "data_removed": True})
    monkeypatch.setattr(streams, "REMOVED_TIMEOUT_SECONDS", 0.05)
    text = client.get(body["urls"]["stream"]).text
    assert text == ": hi\n\n: 408: 408 Request Timeout\n\n"


def test_http_inputs_to_refused_addresses_are_422_naming_the_field(client, version):
    for url in (
        "http://127.0.0.1:9/x.png",
        "http://169.254.169.254/latest/meta-data",
        "https://[::1]/a",
        "http://10.0.0.1/a.png",
    ):
        r = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x", "image": url}})
        assert r.status_code == 422, (url, r.text)
        assert r.json()["field"] == "image" and "image" in r.json()["detail"]


def test_allow_listed_loopback_inputs_are_accepted(client, services, version):
    services.predictions.allow_networks = ["127.0.0.0/8"]
    r = client.post(
        "/v1/predictions",
        json={"version": version["id"], "input": {"prompt": "x", "image": "http://127.0.0.1:9/x.png"}},
    )
    assert r.status_code == 201, r.text


def test_collections_and_examples(client, services, version):
    services.accounts.ensure_account("examples", type="organization", name="Examples")
    services.accounts.issue_token("examples", "r8_examples-token-0123456789")
    from fastapi.testclient import TestClient

    ex = TestClient(client.app, headers={"Authorization": "Bearer r8_examples-token-0123456789"})
    push(
        ex,
        "examples",
        "hello",
        json.loads(json.dumps(services.state.get_version("alice", "hello", version["id"]).openapi_schema)),
        visibility="public",
    )
    page = client.get("/v1/collections").json()
    assert page["previous"] is None and page["next"] is None
    assert {
        "name": "Examples",
        "slug": "examples",
        "description": "The example models that come with cogplane.",
    } in page["results"]
    coll = client.get("/v1/collections/examples").json()
    assert [m["name"] for m in coll["models"]] == ["hello"] and coll["full_description"]
    assert client.get("/v1/collections/nosuch").status_code == 404

    model = client.get("/v1/models/examples/hello").json()
    assert model["default_example"] is None
    assert client.get("/v1/models/examples/hello/examples").json()["results"] == []
    p = ex.post("/v1/models/examples/hello/predictions", json={"input": {"prompt": "hi"}}).json()
    stored = services.state.get_model("examples", "hello")
    services.state.update_model(stored.replace(default_example_id=p["id"], example_ids=[p["id"], "gone"]))
    model = client.get("/v1/models/examples/hello").json()
    assert model["default_example"]["id"] == p["id"] and model["default_example"]["model"] == "examples/hello"
    examples = client.get("/v1/models/examples/hello/examples").json()
    assert [e["id"] for e in examples["results"]] == [p["id"]]


# --- stream URLs are their own capability --------------------------------------------------------


def test_a_prediction_id_opens_no_stream_and_the_token_is_not_the_id(app, client, services, iterator_version):
    from fastapi.testclient import TestClient

    body = create_prediction(client, iterator_version)
    pid, url = body["id"], body["urls"]["stream"]
    assert pid not in url
    anon = TestClient(app)
    for path in (f"/v1/predictions/{pid}/stream", f"/v1/files/streams/{pid}", f"/v1/streams/{pid}"):
        assert anon.get(path).status_code == 404, path  # the old id-derived URLs are gone
    # another install's token for the same id is refused
    from cogplane.sealing import StreamTokens

    assert anon.get(f"/v1/streams/{StreamTokens(b'other').token(pid)}").status_code == 404


def test_predictions_without_a_stream_url_have_no_stream(app, client, services, version):
    from fastapi.testclient import TestClient

    body = create_prediction(client, version)  # not an iterator model, no `stream: true`
    assert "stream" not in body["urls"]
    token = services.stream_tokens().token(body["id"])
    assert TestClient(app).get(f"/v1/streams/{token}").status_code == 404


def test_a_stream_url_works_while_running_and_for_a_grace_period_after(app, client, services, iterator_version):
    from fastapi.testclient import TestClient

    from cogplane.clock import ManualClock
    from cogplane.sealing import STREAM_GRACE_SECONDS

    body = create_prediction(client, iterator_version)
    anon = TestClient(app)
    services.state.update_prediction(body["id"], {"status": "processing", "output": ["a"]})
    clock = ManualClock("2026-01-01T00:00:00.000000Z")
    services.clock = clock
    services.state.update_prediction(body["id"], {"status": "succeeded", "completed_at": clock.now()})
    clock.advance(STREAM_GRACE_SECONDS - 1)
    r = anon.get(body["urls"]["stream"])
    assert r.status_code == 200 and parse_sse(r.text)[1][-1]["event"] == "done"
    clock.advance(2)
    r = anon.get(body["urls"]["stream"])
    assert r.status_code == 404 and "has ended" in r.json()["detail"]


def test_output_urls_do_not_name_the_prediction(client, services, iterator_version):
    body = create_prediction(client, iterator_version)
    stored = services.state.get_prediction(body["id"])
    assert stored.blob_dir and body["id"] not in stored.blob_dir
    from cogplane.services.presenters import blob_prefix

    assert blob_prefix(stored) == f"predictions/{stored.blob_dir}/"


def test_lines_logged_while_streaming_name_the_prediction(client, services, iterator_version, monkeypatch):
    """A stream's path holds its token, not the prediction id: the route names the prediction once
    the token is opened, so what is logged while it streams carries `prediction_id` (cogplane.logs;
    the stream function's JSON lines, functions/stream/server.py)."""
    import logging

    from cogplane.logs import PredictionFilter

    body = create_prediction(client, iterator_version)
    services.state.update_prediction(body["id"], {"status": "processing", "output": ["a"]})
    services.state.update_prediction(body["id"], {"status": "succeeded"})
    original = streams.events

    async def logged(services, prediction_id):
        logging.getLogger("cogplane.test.stream").warning("streaming")
        async for chunk in original(services, prediction_id):
            yield chunk

    monkeypatch.setattr(streams, "events", logged)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(PredictionFilter())
    logger = logging.getLogger("cogplane.test.stream")
    logger.addHandler(handler)
    try:
        r = client.get(body["urls"]["stream"])
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 200 and parse_sse(r.text)[1][-1]["event"] == "done"
    assert [getattr(record, "prediction_id", None) for record in records] == [body["id"]]
