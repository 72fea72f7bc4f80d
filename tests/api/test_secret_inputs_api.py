"""Secret inputs through the API (SQLite adapters): shown and stored as `**********` everywhere,
the real value only in the job handed to the runner, encrypted."""

from __future__ import annotations

from cogplane.sealing import REDACTED
from cogplane.services.presenters import present_prediction
from tests.api.conftest import push
from tests.conftest import SECRET_PLAIN, secret_schema


def test_a_secret_input_is_redacted_everywhere_and_sealed_for_the_runner(client, services, settings):
    push(client, "alice", "secret", secret_schema())
    services.predictions.allow_networks = ["127.0.0.1"]  # a webhook target (never called here)
    r = client.post(
        "/v1/models/alice/secret/predictions",
        json={"input": {"prompt": "hi", "api_key": SECRET_PLAIN}, "webhook": "http://127.0.0.1:9/hook"},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["input"]["api_key"] == REDACTED and created["input"]["prompt"] == "hi"
    assert SECRET_PLAIN not in r.text
    got = client.get(f"/v1/predictions/{created['id']}")
    assert got.json()["input"]["api_key"] == REDACTED and SECRET_PLAIN not in got.text
    listed = client.get("/v1/predictions")
    assert SECRET_PLAIN not in listed.text and REDACTED in listed.text
    stored = services.state.get_prediction(created["id"])
    assert stored.input["api_key"] == REDACTED
    # the webhook body is the presenter's output over the stored prediction
    assert SECRET_PLAIN not in str(present_prediction(services, stored, "https://cogplane.test"))

    # the runner's hand-off: the job carries the value sealed; only the install's key opens it
    job = services.queue.claim(stored.pool)
    assert job is not None and job.prediction_id == created["id"] and job.sealed
    assert SECRET_PLAIN not in job.sealed
    assert services.secret_box().open(created["id"], job.sealed) == {"api_key": SECRET_PLAIN}

    # nothing on disk holds the plain value: the database, its WAL, or any other state file
    for path in settings.home.rglob("*"):
        if path.is_file():
            assert SECRET_PLAIN.encode() not in path.read_bytes(), path


def test_a_prediction_without_secrets_queues_no_sealed_values(client, services, version):
    r = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}})
    assert r.status_code == 201
    job = services.queue.claim(services.state.get_prediction(r.json()["id"]).pool)
    assert job is not None and job.sealed is None
