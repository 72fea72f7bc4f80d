"""The runner's loop (RunnerProcess.run) against a fake cog: an image version's pool, whose cog
server the runner does not start (COG_URL), so that claiming, sending, the webhooks, canceling,
a refused input and a failed setup are exercised in-process in well under a second each."""

from __future__ import annotations

import threading

import pytest

from cogplane.domain.entities import Model, Version
from gpu_runner.cog_server import free_port
from gpu_runner.runner import EXIT_SETUP_FAILED, RunnerConfig, RunnerProcess
from tests.runner.conftest import FakeCog, wait_until

VERSION = "fa" * 32


@pytest.fixture
def pool(services, schema, monkeypatch):
    """An image version of alice/hello; returns a function that queues a prediction of it."""
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    services.accounts.ensure_account("alice")
    services.state.create_model(Model(owner="alice", name="hello", created_at="2026-01-01T00:00:00.000000Z"))
    version = Version(
        id=VERSION,
        owner="alice",
        name="hello",
        created_at="2026-01-01T00:00:00.000000Z",
        openapi_schema=schema,
        kind="image",
        image="r.example/x@sha256:" + VERSION,
    )
    services.state.put_version(version)

    def queue(prompt: str):
        alice = services.state.get_account("alice")
        model = services.state.get_model("alice", "hello")
        return services.predictions.create(alice, model, version, {"input": {"prompt": prompt}})

    return queue


def _start(services, tmp_path, cog: FakeCog, idle_timeout: float = 30.0):
    runner = RunnerProcess(
        services,
        RunnerConfig(
            pool=f"v-{VERSION}",
            work_root=tmp_path / "work",
            env_cache=tmp_path / "envs",
            idle_timeout=idle_timeout,
            cog_url=cog.url,
            http_port=free_port(),
            stop_grace=2,
        ),
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    thread.start()
    return runner, thread, result


def _stop(runner: RunnerProcess, thread: threading.Thread) -> None:
    runner.request_stop()
    thread.join(30)
    assert not thread.is_alive()


def test_predictions_run_through_the_fake_cog(services, pool, fake_cog, tmp_path):
    first = pool("one")
    runner, thread, result = _start(services, tmp_path, fake_cog)
    try:
        state = services.state
        assert wait_until(lambda: state.get_prediction(first.id).status == "succeeded", 20)
        second = pool("two")  # a warm runner: claimed without a boot
        assert wait_until(lambda: state.get_prediction(second.id).status == "succeeded", 20)
        done = state.get_prediction(first.id)
        assert done.output == "hello one" and "working\n" in done.logs and "Booting" in done.logs
        assert done.runner_id == runner.id and done.metrics["predict_time"] == 0.01
        assert "boot_time" in done.metrics and "boot_time" not in state.get_prediction(second.id).metrics
        puts = [body for method, _, body in fake_cog.requests if method == "PUT"]
        assert [b["input"] for b in puts] == [{"prompt": "one"}, {"prompt": "two"}]
        assert all(b["webhook"] == runner.loopback.webhook_url(b["id"]) for b in puts)
        assert len(runner.recorder) == 0
    finally:
        _stop(runner, thread)
    assert result == [0] and state.get_runner(runner.id) is None


def test_a_canceled_prediction_is_canceled_in_cog(services, pool, fake_cog, tmp_path):
    fake_cog.hold = True
    prediction = pool("long")
    runner, thread, _ = _start(services, tmp_path, fake_cog)
    try:
        state = services.state
        assert wait_until(lambda: state.get_prediction(prediction.id).status == "processing", 20)
        services.predictions.cancel(state.get_account("alice"), prediction.id)
        assert wait_until(lambda: prediction.id in fake_cog.canceled, 10)
        assert wait_until(lambda: len(runner.recorder) == 0, 10)
        assert state.get_prediction(prediction.id).status == "canceled"
    finally:
        _stop(runner, thread)


def test_an_input_cog_refuses_fails_that_prediction_only(services, pool, fake_cog, tmp_path):
    fake_cog.refuse = (422, '{"detail": [{"loc": ["body", "input", "prompt"], "msg": "too long"}]}')
    bad = pool("x" * 10)
    runner, thread, _ = _start(services, tmp_path, fake_cog)
    try:
        state = services.state
        assert wait_until(lambda: state.get_prediction(bad.id).status == "failed", 20)
        assert state.get_prediction(bad.id).error == "Input validation failed: prompt: too long"
        fake_cog.refuse = None
        good = pool("ok")
        assert wait_until(lambda: state.get_prediction(good.id).status == "succeeded", 20)
        assert not runner.restart_needed.is_set()
    finally:
        _stop(runner, thread)


def test_stopping_fails_what_is_still_running_with_the_reason(services, pool, fake_cog, tmp_path):
    fake_cog.hold = True
    prediction = pool("long")
    runner, thread, result = _start(services, tmp_path, fake_cog)
    assert wait_until(lambda: services.state.get_prediction(prediction.id).status == "processing", 20)
    _stop(runner, thread)  # the grace (2 s) passes: cog is never told, the prediction fails
    final = services.state.get_prediction(prediction.id)
    assert final.status == "failed" and final.error == runner.stop_reason and result == [0]


def test_a_setup_that_fails_fails_the_queue_and_exits(services, pool, fake_cog, tmp_path):
    fake_cog.health = {"status": "SETUP_FAILED", "setup": {"logs": "RuntimeError: no weights"}}
    queued = [pool("a"), pool("b")]
    runner, thread, result = _start(services, tmp_path, fake_cog)
    thread.join(30)
    assert result == [EXIT_SETUP_FAILED]
    for prediction in queued:
        final = services.state.get_prediction(prediction.id)
        assert final.status == "failed" and "RuntimeError: no weights" in final.error
    assert "Model setup failed" in services.state.get_prediction(queued[0].id).logs
    assert not [r for r in fake_cog.requests if r[0] == "PUT"]


def test_a_crashed_worker_is_marked_for_restart_before_its_job_is_acked():
    """The crash's failure is recorded (visible to clients) before _done runs; the loop claims new
    work as soon as it wakes. The restart mark must come first, before the ack (SQS, a network call
    on the deployed shape) and the wakeup, or the next job goes to the dead cog server."""
    from types import SimpleNamespace

    from gpu_runner.cog_client import WORKER_CRASHED, CogUpdate

    marked_at_ack: list[bool] = []
    runner = SimpleNamespace(
        loopback=None,
        restart_needed=threading.Event(),
        wakeup=threading.Event(),
        last_work=0.0,
    )
    runner.queue = SimpleNamespace(ack=lambda job: marked_at_ack.append(runner.restart_needed.is_set()))
    flight = SimpleNamespace(prediction_id="p1", job=object())
    RunnerProcess._done(runner, flight, CogUpdate(status="failed", error=WORKER_CRASHED))
    assert marked_at_ack == [True] and runner.wakeup.is_set()
