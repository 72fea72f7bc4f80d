"""Issue 3's acceptance: real Cog models end to end through the official Python client."""

from __future__ import annotations

import os
import signal
import struct
import time
import uuid

import pytest
from replicate.exceptions import ModelError

from tests.system.conftest import REPO, alive, descendants, wait_for

pytestmark = pytest.mark.system


def read_bytes(value, stack) -> bytes:
    """An output file: a FileOutput (https/data) over HTTPS, never a plain string; on the plain-HTTP
    simulation the clients give the URL string (they wrap https: URLs only), fetched here."""
    if isinstance(value, str) and not stack.tls:
        with stack.anon() as anon:
            return anon.get(value).content
    assert hasattr(value, "read"), f"expected a FileOutput, got {value!r}"
    return value.read()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_python_client_runs_hello_with_and_without_prefer_wait(stack):
    client = stack.replicate()
    assert client.run("examples/hello", input={"prompt": "world"}) == "hello world"
    assert client.run("examples/hello", input={"prompt": "poll"}, wait=False) == "hello poll"
    version = client.models.get("examples/hello").latest_version.id
    assert client.run(f"examples/hello:{version}", input={"prompt": "pinned"}) == "hello pinned"


def test_python_client_polls_when_the_wait_runs_out(stack, model_copy):
    stack.cli("push", str(model_copy("sleeper")), "local/sleeper-wait")
    client = stack.replicate()
    # a runner first: a cold boot's create (RunTask on the deployed shape) can itself outlast the
    # client's read timeout of wait + 0.5 s, which is not what this test is about
    assert client.run("local/sleeper-wait", input={"seconds": 0}) == "slept 0"
    wait = stack.short_wait
    seconds = wait + 1.5
    started = time.monotonic()
    output = client.run("local/sleeper-wait", input={"seconds": seconds, "tag": "x"}, wait=wait)
    assert output == f"slept {seconds} x"
    assert time.monotonic() - started >= seconds


@pytest.mark.slow
def test_style_transfer_on_an_image_file_gives_a_png(stack):
    client = stack.replicate()
    with open(REPO / "examples" / "style-transfer" / "input.png", "rb") as image:
        output = client.run("examples/style-transfer", input={"image": image, "style": 3, "max_size": 128})
    width, height = png_size(read_bytes(output, stack))
    assert max(width, height) == 128


@pytest.mark.slow
def test_tts_wav_fed_to_whisper_gives_the_sentence_back(stack):
    client = stack.replicate()
    sentence = "Hello from a self-hosted model server."
    wav = client.run("examples/tts", input={"text": sentence})
    data = read_bytes(wav, stack)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    url = wav.url if hasattr(wav, "url") else str(wav)
    segments = client.run("examples/whisper", input={"audio": url})
    text = "".join(segments) if not isinstance(segments, str) else segments
    assert text.strip().lower().rstrip(".") == sentence.lower().rstrip(".")


def test_a_predictor_that_raises_makes_run_raise_model_error(stack, model_copy):
    folder = model_copy("raises")
    (folder / "nonce.txt").write_text(uuid.uuid4().hex)  # a version of its own: its pool starts cold
    stack.cli("push", str(folder), "local/raises")
    with pytest.raises(ModelError) as info:
        stack.replicate().run("local/raises", input={"message": "the predictor's own words"})
    assert "the predictor's own words" in str(info.value)
    prediction = info.value.prediction
    assert prediction.status == "failed" and "about to fail" in (prediction.logs or "")
    # a new version's pool was cold: the logs said it was booting, the metrics say where time went
    assert "Booting local/raises (cold start" in prediction.logs
    for key in ("boot_time", "setup_time", "queue_time", "predict_time", "total_time"):
        assert isinstance(prediction.metrics[key], float | int), key


def test_setup_failure_fails_the_predictions_with_the_setup_error(stack, model_copy):
    stack.cli("push", str(model_copy("setup_fails")), "local/setup-fails")
    with stack.client() as c:
        ids = [
            c.post("/v1/models/local/setup-fails/predictions", json={"input": {"text": str(i)}}).json()["id"]
            for i in range(2)
        ]
        for pid in ids:
            done = wait_for(
                lambda pid=pid: (
                    (p := c.get(f"/v1/predictions/{pid}").json())["status"] not in ("starting", "processing") and p
                ),
                timeout=120,
            )
            assert done["status"] == "failed"
            assert "the weights are missing on purpose" in done["error"]


def test_cancel_of_a_long_prediction_ends_canceled(stack, model_copy):
    """The model run itself stops: the same single-slot runner takes the next job long before
    the canceled 60 s run could have finished on its own."""
    folder = model_copy("sleeper")
    (folder / "nonce.txt").write_text(uuid.uuid4().hex)  # a pool of its own: one runner, one slot
    stack.cli("push", str(folder), "local/sleeper-cancel")
    with stack.client() as c:
        pid = c.post("/v1/models/local/sleeper-cancel/predictions", json={"input": {"seconds": 60}}).json()["id"]
        wait_for(lambda: c.get(f"/v1/predictions/{pid}").json()["status"] == "processing", timeout=120)
        wait_for(lambda: "tick 0" in (c.get(f"/v1/predictions/{pid}").json()["logs"] or ""), timeout=30)
        runner = stack.prediction_record(pid)["runner_id"]
        r = c.post(f"/v1/predictions/{pid}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "canceled"
        final = c.get(f"/v1/predictions/{pid}").json()
        assert final["status"] == "canceled" and final["completed_at"]
        nxt = c.post("/v1/models/local/sleeper-cancel/predictions", json={"input": {"seconds": 0}}).json()
        done = wait_for(
            lambda: (p := c.get(f"/v1/predictions/{nxt['id']}").json())["status"] == "succeeded" and p, timeout=30
        )
        taken_by = stack.prediction_record(nxt["id"])["runner_id"]
        assert taken_by == runner, "the runner whose model run was canceled took the next job"
        assert done["output"] == "slept 0"
        assert c.get(f"/v1/predictions/{pid}").json()["status"] == "canceled"


def _runner_pid_for(stack, prediction_id: str, client) -> int:
    """The pid of the runner running the prediction (on the simulation, the ECS task's process)."""
    wait_for(lambda: client.get(f"/v1/predictions/{prediction_id}").json()["status"] == "processing", timeout=120)
    runner_id = stack.prediction_record(prediction_id)["runner_id"]
    return next(r["pid"] for r in stack.runner_records() if r["id"] == runner_id)


def test_kill_9_of_a_runner_fails_its_prediction_and_the_queue_moves_on(stack, model_copy):
    version = stack.cli("push", str(model_copy("sleeper")), "local/sleeper-kill").stdout.strip()
    with stack.client() as c:
        running = c.post("/v1/predictions", json={"version": version, "input": {"seconds": 60, "tag": "a"}}).json()
        runner_pid = _runner_pid_for(stack, running["id"], c)
        queued = [
            c.post("/v1/predictions", json={"version": version, "input": {"seconds": 0, "tag": f"q{i}"}}).json()["id"]
            for i in range(3)
        ]
        cog_pids = descendants(runner_pid)
        assert cog_pids, "the runner should have a cog server below it"
        os.kill(runner_pid, signal.SIGKILL)

        # one machine: the dispatcher sees its child exit; deployed: the expirer (every minute) finds
        # the runner's heartbeat 30 s old
        local = stack.shape == "local"
        failed = wait_for(
            lambda: (p := c.get(f"/v1/predictions/{running['id']}").json())["status"] == "failed" and p,
            timeout=60 if local else 150,
        )
        assert "runner" in failed["error"]
        assert ("stopped unexpectedly" if local else "stopped responding") in failed["error"], failed["error"]
        wait_for(lambda: not any(alive(p) for p in cog_pids), timeout=10)
        for pid in queued:
            done = wait_for(
                lambda pid=pid: (p := c.get(f"/v1/predictions/{pid}").json())["status"] == "succeeded" and p,
                timeout=180,
            )
            assert done["output"].startswith("slept 0")
        # none ran twice: every queued prediction was started exactly once, by a runner still alive
        assert c.get(f"/v1/predictions/{running['id']}").json()["status"] == "failed"


def test_a_crashed_worker_fails_its_prediction_and_the_server_is_restarted(one_runner_stack, model_copy):
    """cog never recovers from a worker crash (UNHEALTHY, 409 for good): the runner fails the
    prediction with a reason and restarts the cog server, so the next prediction runs."""
    stack = one_runner_stack
    folder = model_copy("crashy")
    (folder / "nonce.txt").write_text(uuid.uuid4().hex)
    stack.cli("push", str(folder), "local/crashy")
    with stack.client() as c:
        crashed = c.post("/v1/models/local/crashy/predictions", json={"input": {"crash": True}}).json()
        failed = wait_for(
            lambda: (
                (p := c.get(f"/v1/predictions/{crashed['id']}").json())["status"] not in ("starting", "processing")
                and p
            ),
            timeout=120,
        )
        assert failed["status"] == "failed" and failed["error"], failed
        runner = stack.prediction_record(crashed["id"])["runner_id"]
        after = c.post("/v1/models/local/crashy/predictions", json={"input": {"crash": False}}).json()
        done = wait_for(
            lambda: (
                (p := c.get(f"/v1/predictions/{after['id']}").json())["status"] not in ("starting", "processing") and p
            ),
            timeout=120,
        )
        assert done["status"] == "succeeded" and done["output"] == "still standing"
        taken_by = stack.prediction_record(after["id"])["runner_id"]
        assert taken_by == runner, "the same runner restarted its cog server and went on"
