"""The predictions API through TestClient, checked against replicate 1.0.7's own models."""

from __future__ import annotations

import replicate.prediction as rp

from tests.api.conftest import push


def parse_with_client_models(body):
    """replicate 1.0.7 rejects null model/version, non-string error, nulls in urls."""
    return rp.Prediction(**body)


def test_create_with_bare_version_id_returns_201_and_client_parsable_prediction(client, version):
    r = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "hi"}})
    assert r.status_code == 201, r.text
    body = r.json()
    parsed = parse_with_client_models(body)
    assert parsed.status == "starting"
    assert body["model"] == "alice/hello" and body["version"] == version["id"]
    assert body["urls"]["get"] == f"https://cogplane.test/v1/predictions/{body['id']}"
    assert len(body["id"]) == 26 and body["id"].islower()
    assert body["logs"] == "" and body["error"] is None and body["metrics"] == {}
    assert "stream" not in body["urls"]
    assert r.headers["ratelimit-remaining"] and r.headers["ratelimit-reset"]


def test_create_with_owner_name_version_and_model_route(client, version):
    r = client.post("/v1/predictions", json={"version": f"alice/hello:{version['id']}", "input": {"prompt": "a"}})
    assert r.status_code == 201
    r = client.post("/v1/models/alice/hello/predictions", json={"input": {"prompt": "b"}})
    assert r.status_code == 201
    assert r.json()["version"] == version["id"]


def test_unknown_version_is_422_in_replicates_shape(client, version):
    r = client.post("/v1/predictions", json={"version": "0" * 64, "input": {}})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["title"] == "Invalid version or not permitted"
    assert r.json()["status"] == 422


def test_someone_elses_private_version_is_422_and_their_model_404(client, bob, version):
    r = bob.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}})
    assert r.status_code == 422
    assert bob.get("/v1/models/alice/hello").status_code == 404
    assert bob.get(f"/v1/models/alice/hello/versions/{version['id']}").status_code == 404


def test_input_breaking_the_schema_is_422_naming_field_and_nothing_is_queued(client, services, version):
    r = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x", "steps": 99}})
    assert r.status_code == 422
    assert r.json()["field"] == "steps"
    assert "maximum" in r.json()["detail"] or "greater" in r.json()["detail"]
    r = client.post("/v1/predictions", json={"version": version["id"], "input": {}})
    assert r.status_code == 422 and r.json()["field"] == "prompt"
    assert services.queue.depth(f"v-{version['id']}") == 0
    assert client.get("/v1/predictions").json()["results"] == []


def test_local_path_for_file_input_is_refused(client, version):
    r = client.post(
        "/v1/predictions", json={"version": version["id"], "input": {"prompt": "x", "image": "/etc/hostname"}}
    )
    assert r.status_code == 422 and r.json()["field"] == "image"


def test_malformed_json_400_wrong_type_415_too_big_413(client, version, services):
    r = client.post("/v1/predictions", content=b'{"version": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    r = client.post("/v1/predictions", content=b"version=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    big = b'{"input": {"prompt": "' + b"x" * (services.settings.max_body_bytes + 10) + b'"}}'
    r = client.post("/v1/predictions", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_auth_bearer_and_token_accepted_anything_else_401(app, version):
    from fastapi.testclient import TestClient

    from tests.api.conftest import TOKEN

    anon = TestClient(app)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        r = anon.get("/v1/predictions", headers=headers)
        assert r.status_code == 401
        assert r.json()["title"] == "Unauthenticated"
        assert r.json()["detail"] == "You did not pass a valid authentication token"
    assert anon.get("/v1/predictions", headers={"Authorization": f"Token {TOKEN}"}).status_code == 200
    assert anon.get("/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_predictions_are_private_to_their_creator(client, bob, version):
    pid = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}).json()["id"]
    assert bob.get(f"/v1/predictions/{pid}").status_code == 404
    assert bob.post(f"/v1/predictions/{pid}/cancel").status_code == 404
    assert bob.get("/v1/predictions").json()["results"] == []
    assert client.get(f"/v1/predictions/{pid}").status_code == 200


def test_cancel_queued_prediction_is_canceled_at_once_and_stable(client, version):
    pid = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}).json()["id"]
    r = client.post(f"/v1/predictions/{pid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert r.json()["completed_at"]
    again = client.post(f"/v1/predictions/{pid}/cancel")
    assert again.json()["status"] == "canceled" and again.json()["completed_at"] == r.json()["completed_at"]
    parse_with_client_models(again.json())


def test_list_is_newest_first_with_absolute_next_over_pages(client, services, version):
    services.settings.page_size = 3
    ids = [
        client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": str(i)}}).json()["id"]
        for i in range(7)
    ]
    seen, url = [], "/v1/predictions"
    pages = 0
    while url:
        page = client.get(url).json()
        pages += 1
        seen += [p["id"] for p in page["results"]]
        url = page["next"]
        if url:
            assert url.startswith("https://cogplane.test/v1/predictions?") and "cursor=" in url
    assert pages == 3
    assert seen == list(reversed(ids))


def test_prefer_wait_returns_starting_when_not_done_within_n(client, version):
    r = client.post(
        "/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}, headers={"Prefer": "wait=1"}
    )
    assert r.status_code == 201
    assert r.json()["status"] == "starting"
    assert r.headers["Preference-Applied"] == "wait=1"
    assert r.headers["Location"] == r.json()["urls"]["get"]


def test_prefer_wait_returns_terminal_prediction_when_done(client, services, version):
    import threading

    def finish_soon():
        import time

        for _ in range(200):
            page = services.state.list_predictions("alice", limit=1).items
            if page:
                services.state.update_prediction(page[0].id, {"status": "succeeded", "output": "hello x"})
                return
            time.sleep(0.01)

    t = threading.Thread(target=finish_soon)
    t.start()
    r = client.post(
        "/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}, headers={"Prefer": "wait"}
    )
    t.join()
    assert r.json()["status"] == "succeeded" and r.json()["output"] == "hello x"
    assert r.headers["Preference-Applied"] == "wait"


def test_bad_cancel_after_is_400(client, version):
    r = client.post(
        "/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}, headers={"Cancel-After": "soon"}
    )
    assert r.status_code == 400
    r = client.post(
        "/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}, headers={"Cancel-After": "1m30s"}
    )
    assert r.status_code == 201 and r.json()["deadline"]


def test_unknown_prediction_is_404_problem(client):
    r = client.get("/v1/predictions/doesnotexist")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


def test_webhook_must_be_absolute_http_url(client, version):
    r = client.post(
        "/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}, "webhook": "not a url"}
    )
    assert r.status_code == 422 and r.json()["field"] == "webhook"
    r = client.post(
        "/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}, "webhook_events_filter": ["bogus"]}
    )
    assert r.status_code == 422


def test_iterator_model_predictions_carry_stream_url(client, schema):
    schema["components"]["schemas"]["Output"] = {
        "type": "array",
        "items": {"type": "string"},
        "x-cog-array-type": "iterator",
        "x-cog-array-display": "concatenate",
    }
    v = push(client, "alice", "streamer", schema, files={"cog.yaml": "predict: p.py:P\n"})
    body = client.post("/v1/predictions", json={"version": v["id"], "input": {"prompt": "x"}}).json()
    assert "/v1/streams/" in body["urls"]["stream"] and body["id"] not in body["urls"]["stream"]


def test_each_prediction_counts_as_a_run_of_the_model(client, version):
    for _ in range(2):
        client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}})
    assert client.get("/v1/models/alice/hello").json()["run_count"] == 2


def test_prefer_wait_in_a_second_prefer_header_is_applied(client, version):
    # RFC 7240: several Prefer headers are one list; only the first was read
    r = client.post(
        "/v1/predictions",
        json={"version": version["id"], "input": {"prompt": "x"}},
        headers=[("Prefer", "respond-async"), ("Prefer", "wait=1")],
    )
    assert r.status_code == 201
    assert r.headers.get("Preference-Applied") == "wait=1"
