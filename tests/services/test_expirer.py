"""The expirer on an injected clock: timeouts, Cancel-After deadlines, lost runners and the
one-hour data removal (output URLs stop serving)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from cogplane.domain.entities import Runner
from cogplane.services.expirer import Expirer
from cogplane.services.presenters import blob_prefix, blob_ref
from functions.api.app import create_app
from tests.services.conftest import make_version


@pytest.fixture
def made(local):
    return make_version(local)


def create(local, made, **kw):
    alice, model, version = made
    return local.predictions.create(alice, model, version, {"input": {"prompt": "x"}}, **kw)


def test_running_past_the_timeout_fails_with_a_clear_error(local, made, clock):
    local.predictions.timeout_seconds = 1800
    p = create(local, made)
    local.state.update_prediction(p.id, {"status": "processing", "started_at": clock.now()})
    expirer = Expirer(local)
    clock.advance(1799)
    expirer.run_once()
    assert local.state.get_prediction(p.id).status == "processing"
    clock.advance(2)
    assert expirer.run_once()["timeout"] == 1
    failed = local.state.get_prediction(p.id)
    assert failed.status == "failed" and "timed out" in failed.error and "1800" in failed.error
    assert failed.metrics["predict_time"] == pytest.approx(1801, abs=0.01)


def test_cancel_after_aborts_a_prediction_that_never_started(local, made, clock):
    p = create(local, made, cancel_after="30s")
    assert p.deadline
    clock.advance(31)
    Expirer(local).run_once()
    aborted = local.state.get_prediction(p.id)
    assert aborted.status == "aborted" and "deadline" in aborted.error


def test_cancel_after_cancels_a_running_prediction(local, made, clock):
    p = create(local, made, cancel_after="1m30s")
    local.state.update_prediction(p.id, {"status": "processing", "started_at": clock.now()})
    clock.advance(89)
    Expirer(local).run_once()
    assert local.state.get_prediction(p.id).status == "processing"
    clock.advance(2)
    Expirer(local).run_once()
    assert local.state.get_prediction(p.id).status == "canceled"


def test_a_runner_that_stopped_heartbeating_has_its_predictions_failed(local, made, clock):
    p = create(local, made)
    local.state.update_prediction(p.id, {"status": "processing", "started_at": clock.now(), "runner_id": "r-1"})
    local.state.put_runner(Runner(id="r-1", pool=p.pool, state="ready", heartbeat_at=clock.now(), in_flight=[p.id]))
    expirer = Expirer(local, lost_after=30)
    clock.advance(20)
    assert expirer.run_once()["lost"] == 0
    clock.advance(15)
    assert expirer.run_once()["lost"] == 1
    failed = local.state.get_prediction(p.id)
    assert failed.status == "failed" and "stopped responding" in failed.error
    assert local.state.get_runner("r-1") is None


def test_api_predictions_lose_their_data_after_one_hour_and_urls_stop_serving(local, made, clock):
    p = create(local, made)
    key = f"{blob_prefix(p)}1/out.txt"  # the prediction's random blob folder: no id in output URLs
    assert p.id not in key
    local.blobs.put(key, b"secret output", content_type="text/plain")
    local.state.update_prediction(
        p.id, {"status": "succeeded", "output": blob_ref(key), "logs": "some logs", "completed_at": clock.now()}
    )
    client = TestClient(create_app(local))
    url = local.blobs.signed_url(key, expires_in=7200)
    path = url.split("https://cogplane.test", 1)[1]
    assert client.get(path).content == b"secret output"
    clock.advance(3599)
    Expirer(local).run_once()
    assert local.state.get_prediction(p.id).data_removed is False
    clock.advance(2)
    assert Expirer(local).run_once()["remove"] == 1
    removed = local.state.get_prediction(p.id)
    assert removed.data_removed and removed.output is None and removed.input == {} and removed.logs == ""
    assert removed.status == "succeeded"
    assert client.get(path).status_code == 404
    assert local.blobs.head(key) is None


def test_web_predictions_are_kept(local, made, clock):
    p = create(local, made, source="web")
    local.state.update_prediction(p.id, {"status": "succeeded", "output": "x", "completed_at": clock.now()})
    clock.advance(7 * 24 * 3600)
    Expirer(local).run_once()
    assert local.state.get_prediction(p.id).data_removed is False


def test_removal_waits_for_a_prediction_still_running(local, made, clock):
    local.predictions.timeout_seconds = 7200  # (a run timeout would fail it before the hour is up)
    p = create(local, made)
    local.state.update_prediction(p.id, {"status": "processing", "started_at": clock.now()})
    clock.advance(3601)
    Expirer(local).run_once()
    assert local.state.get_prediction(p.id).data_removed is False
    local.state.update_prediction(p.id, {"status": "succeeded", "output": "x", "completed_at": clock.now()})
    clock.advance(301)
    Expirer(local).run_once()
    assert local.state.get_prediction(p.id).data_removed is True


def test_files_api_uploads_are_deleted_when_they_expire(local, clock):
    alice = local.state.get_account("alice")
    record = local.files.create(alice, b"bytes", filename="a.txt", content_type="text/plain")
    assert local.blobs.head(record.blob_key) is not None
    clock.advance(24 * 3600 - 1)
    Expirer(local).run_once()
    assert local.state.get_file(record.id) is not None
    clock.advance(2)
    assert Expirer(local).run_once()["file_expiry"] == 1
    assert local.state.get_file(record.id) is None and local.blobs.head(record.blob_key) is None


class WhyDispatcher:
    """A dispatcher that says why a pool has no runner (the port's optional `start_problem`)."""

    def __init__(self):
        self.asked: list[str] = []

    def wake(self, pool: str) -> None:
        pass

    def start_problem(self, pool: str) -> str:
        self.asked.append(pool)
        return "its runner task t-1 is still PROVISIONING: no capacity came for hardware gpu-t4."


def test_a_prediction_not_started_by_its_start_deadline_fails_with_the_dispatchers_reason(local, made, clock):
    local.predictions.start_deadline_seconds = 900
    local.dispatcher = why = WhyDispatcher()
    p = create(local, made)
    assert p.start_by == "2026-03-01T12:15:00.000000Z"
    expirer = Expirer(local)
    clock.advance(899)
    assert expirer.run_once()["start"] == 0
    assert local.state.get_prediction(p.id).status == "starting"
    clock.advance(2)
    assert expirer.run_once()["start"] == 1
    failed = local.state.get_prediction(p.id)
    assert failed.status == "failed" and failed.completed_at
    assert failed.error == (
        "The prediction did not start within 15 min: its runner task t-1 is still PROVISIONING: no capacity "
        "came for hardware gpu-t4."
    )
    assert why.asked == [p.pool]


def test_the_start_deadline_waits_while_a_runner_of_the_pool_is_alive(local, made, clock):
    """A booting runner (building the environment, running setup) or one busy with earlier work is
    not a start failure: checked again a minute later, failed once the pool has no live runner."""
    local.predictions.start_deadline_seconds = 60
    p = create(local, made)
    local.state.put_runner(Runner(id="r-1", pool=p.pool, state="booting", heartbeat_at=clock.now(), in_flight=[]))
    expirer = Expirer(local, lost_after=30)
    for _ in range(3):  # beating
        clock.advance(25)
        local.state.put_runner(Runner(id="r-1", pool=p.pool, state="booting", heartbeat_at=clock.now(), in_flight=[]))
        expirer.run_once()
    assert local.state.get_prediction(p.id).status == "starting"
    local.state.update_prediction(p.id, {"status": "processing", "started_at": clock.now()})
    clock.advance(120)
    expirer.run_once()
    assert local.state.get_prediction(p.id).status == "processing"  # started: the timer is done


def test_without_a_reason_the_start_deadline_error_still_says_what_happened(local, made, clock):
    local.predictions.start_deadline_seconds = 30
    p = create(local, made)
    clock.advance(31)
    Expirer(local).run_once()
    failed = local.state.get_prediction(p.id)
    assert (
        failed.status == "failed"
        and failed.error == "The prediction did not start within 30 s: no runner started for it."
    )


def test_deployed_log_lines_are_json_with_the_prediction_id(local, made, clock):
    """Powertools' JSON formatter (cogplane.logs, set up by each Lambda function on its first event):
    what the expirer logs while handling a prediction's timer names the prediction."""
    import io
    import json
    import logging

    from cogplane.logs import setup_json_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        setup_json_logging("expirer", stream=out)
        local.predictions.start_deadline_seconds = 30
        p = create(local, made)
        clock.advance(31)
        Expirer(local).run_once()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    about = [line for line in lines if "failed to start" in line["message"]]
    assert about and all(line["prediction_id"] == p.id and line["service"] == "expirer" for line in about), lines
