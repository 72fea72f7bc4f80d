"""The trainings API through TestClient, checked against replicate 1.0.7's own Training model."""

from __future__ import annotations

import replicate.training as rt

from cogplane.services.presenters import blob_ref
from tests.api.conftest import push
from tests.conftest import TRAIN_SCHEMA_EXTRA


def _trainable(client, schema):
    schema["components"]["schemas"].update(TRAIN_SCHEMA_EXTRA)
    schema["paths"] = {"/predictions": {}, "/trainings": {}, "/trainings/{training_id}/cancel": {}}
    version = push(client, "alice", "base", schema)
    assert client.post("/v1/models", json={"owner": "alice", "name": "tuned"}).status_code == 201
    return version


def _create(client, version_id, **body):
    return client.post(
        f"/v1/models/alice/base/versions/{version_id}/trainings",
        json={"destination": "alice/tuned", "input": {"prefix": "hey"}, **body},
    )


def test_create_returns_201_training_parsed_by_the_client(client, services, schema):
    services.predictions.allow_networks = ["127.0.0.0/8"]  # the webhook target below
    version = _trainable(client, schema)
    r = _create(client, version["id"], webhook="http://127.0.0.1:9/hook", webhook_events_filter=["completed"])
    assert r.status_code == 201, r.text
    body = r.json()
    training = rt.Training(**body)
    assert training.status == "starting" and training.destination == "alice/tuned"
    assert body["model"] == "alice/base" and body["version"] == version["id"]
    assert body["input"] == {"prefix": "hey", "steps": 3} or body["input"] == {"prefix": "hey"}
    assert body["urls"] == {
        "get": f"https://cogplane.test/v1/trainings/{body['id']}",
        "cancel": f"https://cogplane.test/v1/trainings/{body['id']}/cancel",
        "web": f"https://cogplane.test/t/{body['id']}",
    }
    assert r.headers["location"] == body["urls"]["get"]
    assert body["webhook"] == "http://127.0.0.1:9/hook"
    # queued on the training pool (a cog server in train mode), not the version's predict pool
    assert services.queue.depth(f"t-{version['id']}") == 1
    assert services.queue.depth(f"v-{version['id']}") == 0


def test_trainings_and_predictions_list_and_read_separately(client, schema):
    version = _trainable(client, schema)
    ids = [_create(client, version["id"]).json()["id"] for _ in range(3)]
    pred = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}).json()
    listed = client.get("/v1/trainings").json()
    assert [t["id"] for t in listed["results"]] == ids[::-1] and listed["next"] is None
    assert [p["id"] for p in client.get("/v1/predictions").json()["results"]] == [pred["id"]]
    assert client.get(f"/v1/trainings/{ids[0]}").json()["destination"] == "alice/tuned"
    assert client.get(f"/v1/trainings/{pred['id']}").status_code == 404  # a prediction is no training
    # JS `replicate.wait(training)` polls /v1/predictions/{id}: a training is readable there too
    assert client.get(f"/v1/predictions/{ids[0]}").json()["urls"]["get"].endswith(f"/v1/trainings/{ids[0]}")


def test_trainings_page_by_cursor(client, services, schema):
    services.settings.page_size = 2
    version = _trainable(client, schema)
    ids = [_create(client, version["id"]).json()["id"] for _ in range(3)]
    first = client.get("/v1/trainings").json()
    assert [t["id"] for t in first["results"]] == ids[:0:-1]
    assert first["next"].startswith("https://cogplane.test/v1/trainings?cursor=")
    second = client.get(first["next"]).json()
    assert [t["id"] for t in second["results"]] == ids[:1] and second["next"] is None


def test_bad_input_is_422_naming_the_field_and_nothing_is_queued(client, services, schema):
    version = _trainable(client, schema)
    r = _create(client, version["id"], input={"prefix": "x", "steps": 0})
    assert r.status_code == 422 and r.json()["field"] == "steps"
    r = _create(client, version["id"], input={})
    assert r.status_code == 422 and r.json()["field"] == "prefix"
    assert services.queue.depth(f"t-{version['id']}") == 0
    assert client.get("/v1/trainings").json()["results"] == []


def test_bad_destination_is_422_naming_the_field(client, bob, schema):
    version = _trainable(client, schema)
    for destination in (None, "tuned", "alice/nope", "a/b/c"):
        r = _create(client, version["id"], destination=destination)
        assert r.status_code == 422, destination
        assert r.json()["field"] == "destination"
    bob.post("/v1/models", json={"owner": "bob", "name": "theirs", "visibility": "public"})
    r = _create(client, version["id"], destination="bob/theirs")  # exists, but not ours to push to
    assert r.status_code == 422 and "cannot push" in r.json()["detail"]
    r = bob.post("/v1/models", json={"owner": "bob", "name": "secret"})
    r = _create(client, version["id"], destination="bob/secret")  # private: as if it did not exist
    assert r.status_code == 422 and "does not exist" in r.json()["detail"]


def test_version_without_training_interface_is_422(client, schema):
    version = push(client, "alice", "plain", schema)
    client.post("/v1/models", json={"owner": "alice", "name": "tuned"})
    r = client.post(
        f"/v1/models/alice/plain/versions/{version['id']}/trainings", json={"destination": "alice/tuned", "input": {}}
    )
    assert r.status_code == 422 and r.json()["field"] == "version"
    assert "train:" in r.json()["detail"]


def test_strangers_cannot_see_or_cancel_a_training(client, bob, schema):
    version = _trainable(client, schema)
    tid = _create(client, version["id"]).json()["id"]
    assert bob.get(f"/v1/trainings/{tid}").status_code == 404
    assert bob.post(f"/v1/trainings/{tid}/cancel").status_code == 404
    assert bob.get("/v1/trainings").json()["results"] == []
    # someone else's private base version: 404, as for the model
    assert (
        bob.post(
            f"/v1/models/alice/base/versions/{version['id']}/trainings",
            json={"destination": "bob/x", "input": {"prefix": "a"}},
        ).status_code
        == 404
    )


def test_cancel_a_queued_training(client, schema):
    version = _trainable(client, schema)
    tid = _create(client, version["id"]).json()["id"]
    r = client.post(f"/v1/trainings/{tid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert rt.Training(**r.json()).status == "canceled"


def test_success_makes_a_deterministic_trained_version_that_keeps_its_weights(client, services, schema):
    """What the runner calls when cog says succeeded: weights stored for good, the destination's
    new version (base code, base prediction schema, id = sha256(base id + weights digest))."""
    version = _trainable(client, schema)
    tid = _create(client, version["id"]).json()["id"]
    training = services.state.get_prediction(tid)
    services.blobs.put(f"predictions/{tid}/outputs/weights.txt", b"howdy", content_type="text/plain")
    changes = {"status": "succeeded", "output": {"weights": blob_ref(f"predictions/{tid}/outputs/weights.txt")}}
    done = services.trainings.complete(training, changes)
    new_ref = done["output"]["version"]
    owner_name, _, new_id = new_ref.partition(":")
    assert owner_name == "alice/tuned" and len(new_id) == 64
    again = services.trainings.complete(training, changes)  # same base + same weights: same version
    assert again["output"]["version"] == new_ref
    services.state.update_prediction(tid, {"status": "processing"})
    services.state.update_prediction(tid, done)

    body = client.get(f"/v1/trainings/{tid}").json()
    parsed = rt.Training(**body)
    assert parsed.status == "succeeded" and parsed.output["version"] == new_ref
    assert body["output"]["weights"].startswith("https://cogplane.test/")
    trained = client.get(f"/v1/models/alice/tuned/versions/{new_id}").json()
    schemas = trained["openapi_schema"]["components"]["schemas"]
    assert schemas["Input"] == schema["components"]["schemas"]["Input"] and "TrainingInput" not in schemas
    assert client.get("/v1/models/alice/tuned").json()["latest_version"]["id"] == new_id
    stored = services.state.get_version("alice", "tuned", new_id)
    assert stored.trained_from == f"alice/base:{version['id']}" and stored.training_id == tid
    assert services.blobs.get(stored.weights_key) == b"howdy"
    assert not stored.weights_key.startswith("predictions/")  # the 1-hour removal never touches it

    # deleting the version removes its weights
    r = client.delete(f"/v1/models/alice/tuned/versions/{new_id}")
    assert r.status_code in (202, 204)
    assert services.blobs.head(stored.weights_key) is None


def test_a_training_without_weights_fails_with_the_reason(client, services, schema):
    version = _trainable(client, schema)
    tid = _create(client, version["id"]).json()["id"]
    done = services.trainings.complete(
        services.state.get_prediction(tid), {"status": "succeeded", "output": "just text"}
    )
    assert done["status"] == "failed" and "no weights file" in done["error"]


def test_weights_inlined_as_a_data_uri_are_stored_too(client, services, schema):
    """coglet in train mode returns a Path output as a data: URI (it uploads only predictions')."""
    version = _trainable(client, schema)
    tid = _create(client, version["id"]).json()["id"]
    done = services.trainings.complete(
        services.state.get_prediction(tid),
        {"status": "succeeded", "output": {"weights": "data:text/plain;base64,aG93ZHk="}},
    )
    stored = services.state.get_version("alice", "tuned", done["output"]["version"].split(":")[1])
    assert services.blobs.get(stored.weights_key) == b"howdy"
    assert stored.weights_key.endswith("/weights.txt")
