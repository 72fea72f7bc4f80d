"""gpu_runner.recorder without cog: the writes of a held prediction's state, fed typed CogUpdates
as the loopback server would hand them on (SQLite state and disk blobs, the real adapters)."""

from __future__ import annotations

from cogplane.domain.entities import Model, Version
from cogplane.services.presenters import BLOB_PREFIX
from gpu_runner.cog_client import CogUpdate
from gpu_runner.recorder import InFlight, Recorder

VERSION = "ab" * 32


def _queued(services, schema, **input_):
    services.accounts.ensure_account("alice")
    alice = services.state.get_account("alice")
    if services.state.get_model("alice", "hello") is None:
        services.state.create_model(Model(owner="alice", name="hello", created_at="2026-01-01T00:00:00.000000Z"))
        services.state.put_version(
            Version(id=VERSION, owner="alice", name="hello", created_at="2026-01-01T00:00:00Z", openapi_schema=schema)
        )
    model = services.state.get_model("alice", "hello")
    version = services.state.get_version("alice", "hello", VERSION)
    prediction = services.predictions.create(alice, model, version, {"input": input_ or {"prompt": "x"}})
    job = services.queue.claim(prediction.pool, lease_seconds=60)
    assert job is not None and job.prediction_id == prediction.id
    return job, services.state.get_prediction(prediction.id)


def _recorder(services, schema, done: list):
    recorder = Recorder(services, runner_id="r-1", on_done=lambda flight, update: done.append((flight, update)))
    recorder.schema = schema
    return recorder


def test_a_prediction_is_taken_once_then_its_progress_and_end_recorded(services, schema):
    done: list[tuple[InFlight, CogUpdate]] = []
    recorder = _recorder(services, schema, done)
    job, prediction = _queued(services, schema)
    held: list[bool] = []
    taken = recorder.start(job, prediction, {"queue_time": 0.5}, on_held=lambda: held.append(True))
    assert taken is not None and held == [True]
    flight, started = taken
    assert started.status == "processing" and started.runner_id == "r-1" and recorder.ids() == [prediction.id]
    assert recorder.start(job, prediction, {}) is None  # already processing: never taken twice
    assert len(recorder) == 1

    recorder.update(prediction.id, CogUpdate(status="processing", logs="step 1\n"))
    assert services.state.get_prediction(prediction.id).logs == "step 1\n"
    recorder.update(
        prediction.id,
        CogUpdate(status="succeeded", logs="step 1\nstep 2\n", output="hello x", metrics={"predict_time": 0.25}),
    )
    final = services.state.get_prediction(prediction.id)
    assert final.status == "succeeded" and final.output == "hello x" and final.logs == "step 1\nstep 2\n"
    assert final.metrics["predict_time"] == 0.25 and final.metrics["queue_time"] == 0.5
    assert final.metrics["total_time"] >= 0 and final.completed_at
    assert len(recorder) == 0 and flight.done.is_set()
    assert [(f.prediction_id, u.status) for f, u in done] == [(prediction.id, "succeeded")]
    recorder.update(prediction.id, CogUpdate(status="failed", error="late"))  # no longer held: ignored
    assert services.state.get_prediction(prediction.id).status == "succeeded" and len(done) == 1


def test_errors_are_cleaned_and_secrets_scrubbed(services, schema):
    done: list = []
    recorder = _recorder(services, schema, done)
    job, prediction = _queued(services, schema)
    flight, _ = recorder.start(job, prediction, {})
    flight.secrets = {"api_key": "s3cr3t-value"}
    recorder.finish(
        prediction.id,
        CogUpdate(
            status="failed",
            logs="using s3cr3t-value\n",
            error="Prediction failed: Prediction failed: ValueError: bad s3cr3t-value",
        ),
    )
    final = services.state.get_prediction(prediction.id)
    assert final.status == "failed" and final.error.startswith("ValueError: bad ")
    assert "s3cr3t-value" not in final.error and "s3cr3t-value" not in final.logs


def test_a_prediction_canceled_meanwhile_stays_canceled(services, schema):
    done: list = []
    recorder = _recorder(services, schema, done)
    job, prediction = _queued(services, schema)
    recorder.start(job, prediction, {})
    services.state.update_prediction(prediction.id, {"status": "canceled"}, expect_status=["processing"])
    recorder.fail_all("The runner was stopped.")
    assert services.state.get_prediction(prediction.id).status == "canceled"
    assert len(recorder) == 0 and len(done) == 1  # released all the same: its job is acked


def test_queued_predictions_fail_or_abort_without_being_held(services, schema):
    recorder = _recorder(services, schema, [])
    job, prediction = _queued(services, schema)
    recorder.append_logs(prediction.id, "Booting\n")
    recorder.fail_unstarted(prediction.id, "Model setup failed: boom")
    failed = services.state.get_prediction(prediction.id)
    assert failed.status == "failed" and failed.error == "Model setup failed: boom" and failed.logs == "Booting\n"
    recorder.append_logs(prediction.id, "more\n")  # ended: no more lines
    assert services.state.get_prediction(prediction.id).logs == "Booting\n"
    job2, late = _queued(services, schema)
    recorder.abort_unstarted(late.id, "too late")
    assert services.state.get_prediction(late.id).status == "aborted" and len(recorder) == 0


def test_an_iterators_output_streams_and_its_files_are_stored_once(services, schema):
    schema = {
        **schema,
        "components": {
            **schema["components"],
            "schemas": {
                **schema["components"]["schemas"],
                "Output": {
                    "type": "array",
                    "items": {"type": "string", "format": "uri"},
                    "x-cog-array-type": "iterator",
                },
            },
        },
    }
    recorder = _recorder(services, schema, [])
    recorder.iterator = True
    job, prediction = _queued(services, schema)
    recorder.start(job, prediction, {})
    one = "data:text/plain;base64,b25l"
    recorder.update(prediction.id, CogUpdate(status="processing", output=[one]))
    first = services.state.get_prediction(prediction.id).output
    assert len(first) == 1 and first[0].startswith(BLOB_PREFIX)
    recorder.update(prediction.id, CogUpdate(status="processing", output=[one, "data:,two"]))
    second = services.state.get_prediction(prediction.id).output
    assert second[0] == first[0] and len(second) == 2
    assert services.blobs.get(second[1][len(BLOB_PREFIX) :]) == b"two"
    assert f"predictions/{prediction.blob_dir}/" in second[0]  # the blob folder, never the id


def test_uploads_map_back_to_their_blobs(services, schema):
    recorder = Recorder(
        services, runner_id="r-1", upload_key=lambda url: url[len("up:") :] if url[:3] == "up:" else None
    )
    recorder.schema = schema
    ref = recorder.store_output("unknown", "out.txt", b"data", "text/plain")
    key = ref[len(BLOB_PREFIX) :]
    assert recorder.map_output(f"up:{key}") == ref and recorder.map_output("plain") == "plain"
