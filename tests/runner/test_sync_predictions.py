"""Sync predictions (RunnerProcess.sync): the runner sends a non-iterator model's prediction as one
sync PUT and takes cog's answer as its end, with no webhook (on cog 0.23 a webhook costs ~3.4 ms a
prediction even when none is sent). What the webhooks gave must stay: the lines a prediction prints
while it runs (read from the cog server's log), a failed prediction's lines (cog's sync answer has
none), cancel. Each test runs both ways (COGPLANE_COG_SYNC on and off) against a real cog server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cogplane.domain.status import TERMINAL
from cogplane.push import prepare
from gpu_runner.cog_server import CogServer, prediction_line
from gpu_runner.runner import RunnerConfig, RunnerProcess
from tests.runner.conftest import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runner_models"


@pytest.fixture(params=[True, False], ids=["sync", "async"])
def cog_sync(request) -> bool:
    return request.param


def _start(services, base_env: Path, tmp_path: Path, inputs: list[dict], cog_sync: bool):
    """Push `chatty` as a source version, queue one prediction per input, start one runner."""
    prepared = prepare(FIXTURES / "chatty")
    alice = services.accounts.ensure_account("alice")
    services.catalog.create_model(alice, {"owner": "alice", "name": "chatty"})
    version, _ = services.catalog.push_version(
        alice,
        "alice",
        "chatty",
        bundle=prepared.bundle,
        schema=prepared.schema,
        config=prepared.config,
        cog_version="0.23.1",
    )
    record = services.state.get_model("alice", "chatty")
    predictions = [services.predictions.create(alice, record, version, {"input": i}) for i in inputs]
    runner = RunnerProcess(
        services,
        RunnerConfig(
            pool=predictions[0].pool,
            work_root=tmp_path / "work",
            env_cache=base_env.parent,
            idle_timeout=1.0,
            cog_sync=cog_sync,
        ),
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    thread.start()
    return alice, [p.id for p in predictions], runner, thread, result


def _finish(services, ids: list[str], runner: RunnerProcess, thread: threading.Thread, result: list[int]) -> list:
    try:
        assert wait_until(lambda: all(services.state.get_prediction(i).status in TERMINAL for i in ids), 120), [
            services.state.get_prediction(i) for i in ids
        ]
    finally:
        runner.stopping.set()
        thread.join(30)
    assert result == [0]
    return [services.state.get_prediction(i) for i in ids]


def _lines(logs: str | None) -> list[str]:
    """The model's own lines (the first prediction's logs begin with the runner's boot lines);
    sorted: coglet reads stdout and stderr from two pipes, so their order may differ."""
    return sorted(line for line in (logs or "").splitlines() if line.startswith(("step ", "a stderr")))


def test_lines_arrive_while_it_runs_and_a_failure_keeps_them(services, base_env, tmp_path, cog_sync):
    alice, ids, runner, thread, result = _start(
        services, base_env, tmp_path, [{"steps": 6, "pause": 0.4}, {"steps": 2, "fail": True}], cog_sync
    )
    # while the first runs, its lines so far are recorded (every ~0.5 s, as cog's logs webhooks)
    assert wait_until(
        lambda: (p := services.state.get_prediction(ids[0])).status == "processing" and "step 2/6" in (p.logs or ""),
        60,
    ), services.state.get_prediction(ids[0])
    assert runner.sync is cog_sync
    long, failed = _finish(services, ids, runner, thread, result)

    assert long.status == "succeeded" and long.output == "6 steps"
    assert _lines(long.logs) == sorted([f"step {n}/6" for n in range(1, 7)] + ["a stderr line"])
    assert failed.status == "failed" and "failed on purpose after its lines" in failed.error
    assert _lines(failed.logs) == sorted(["step 1/2", "step 2/2", "a stderr line"]), failed.logs
    assert long.metrics["predict_time"] >= 2.0 and failed.metrics["predict_time"] < 2.0


def test_a_canceled_prediction_stops_in_cog_and_the_next_one_runs(services, base_env, tmp_path, cog_sync):
    alice, ids, runner, thread, result = _start(
        services, base_env, tmp_path, [{"steps": 100, "pause": 0.2}, {"steps": 1}], cog_sync
    )
    assert wait_until(lambda: "step 2/100" in (services.state.get_prediction(ids[0]).logs or ""), 60)
    services.predictions.cancel(alice, ids[0])
    canceled, after = _finish(services, ids, runner, thread, result)
    assert canceled.status == "canceled" and "step 1/100" in canceled.logs
    assert after.status == "succeeded" and after.output == "1 steps"  # the one slot was freed by cog
    assert "step 100/100" not in (canceled.logs or "")


def test_prediction_lines_in_coglets_log(tmp_path) -> None:
    """What the server's log says a prediction printed (coglet 0.23's JSON lines, as observed)."""

    def line(fields: str) -> str:
        return '{"timestamp":"t","level":"INFO","fields":{' + fields + '},"target":"coglet::prediction"}'

    out = line('"message":"step 1","prediction_id":"p-1","source":"Stdout"')
    err = line('"message":"oops","prediction_id":"p-2","source":"Stderr"')
    own = line('"message":"Starting prediction","prediction_id":"p-1"')
    assert prediction_line(out) == ("p-1", "step 1\n")
    assert prediction_line(err) == ("p-2", "oops\n")
    assert prediction_line(own) is None and prediction_line("not json") is None and prediction_line("[1]") is None

    log = tmp_path / "server.log"
    log.write_text(out + "\n" + own + "\n" + err + "\n")
    server = CogServer(tmp_path, tmp_path, log_path=log, config={"predict": "predict.py:Predictor"})
    assert server.prediction_logs("p-1") == "step 1\n"
    assert server.follow_logs() == {"p-1": "step 1\n", "p-2": "oops\n"}
    with log.open("a") as f:
        f.write(out.replace("step 1", "step 2") + "\n" + out.replace("step 1", "half a line"))
    assert server.follow_logs() == {"p-1": "step 2\n"}  # read on from where it stopped; a partial line waits
    with log.open("a") as f:
        f.write("\n")
    assert server.follow_logs() == {"p-1": "half a line\n"}


def test_the_sync_path_is_only_for_what_cog_can_answer_at_once(tmp_path) -> None:
    """Iterators stream through cog's `output` webhooks, trainings and image versions (the model
    container's cog: no log of ours to read lines from) keep the async path; so does COG_SYNC=0."""
    from types import SimpleNamespace

    from gpu_runner.external_server import ExternalCogServer

    ours = CogServer(tmp_path, tmp_path, log_path=tmp_path / "log", config={"predict": "predict.py:Predictor"})

    def sync(server, *, iterator=False, training=False, cog_sync=True) -> bool:
        runner = SimpleNamespace(
            config=SimpleNamespace(cog_sync=cog_sync),
            boot=SimpleNamespace(server=server, training=training, iterator_output=iterator),
        )
        return RunnerProcess.sync.fget(runner)

    assert sync(ours)
    assert not sync(ours, iterator=True)
    assert not sync(ours, training=True)
    assert not sync(ours, cog_sync=False)
    assert not sync(ExternalCogServer("http://127.0.0.1:1"))
    assert not sync(None)
