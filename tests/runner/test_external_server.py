"""Image versions: the runner drives a cog server it did not start (the model container's, at
COG_URL), here a real cog server (examples/hello) started by the test on a free port; and the
ECS cold-boot phases (a fake task metadata endpoint) reach the waiting prediction."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cogplane.domain.entities import Model, Version
from cogplane.schema import generate_schema
from gpu_runner.cog_server import CogServer, free_port, write_schema
from gpu_runner.external_server import ExternalCogServer
from gpu_runner.runner import RunnerConfig, RunnerProcess
from tests.conftest import ECS_SPAWNED, ECS_TASK
from tests.runner.conftest import MODELS, wait_until

VERSION = "ee" * 32


def _predict_on_image(services, base_env, tmp_path, *, spawned_at=None, ecs_metadata_uri=""):
    model_dir = tmp_path / "image"
    shutil.copytree(MODELS["hello"], model_dir)
    schema = generate_schema(model_dir)
    write_schema(model_dir, schema)
    runner_port = free_port()
    # the "model container": cog started as the task starts it (no upload URL: data URIs)
    cog = CogServer(model_dir, base_env, log_path=tmp_path / "cog.log").start()
    try:
        state = services.state
        services.accounts.ensure_account("alice")
        alice = state.get_account("alice")
        state.create_model(Model(owner="alice", name="hello", created_at="2026-01-01T00:00:00.000000Z"))
        version = Version(
            id=VERSION,
            owner="alice",
            name="hello",
            created_at="2026-01-01T00:00:00.000000Z",
            openapi_schema=schema,
            kind="image",
            image="123456789012.dkr.ecr.us-east-1.amazonaws.com/x@sha256:" + VERSION,
        )
        state.put_version(version)
        model = state.get_model("alice", "hello")
        prediction = services.predictions.create(alice, model, version, {"input": {"prompt": "sidecar"}})

        work = tmp_path / "work"
        runner = RunnerProcess(
            services,
            RunnerConfig(
                pool=prediction.pool,
                work_root=work,
                env_cache=tmp_path / "no-envs",
                idle_timeout=0.5,
                cog_url=cog.url,
                http_port=runner_port,
                spawned_at=spawned_at,
                ecs_metadata_uri=ecs_metadata_uri,
            ),
        )
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
        thread.start()
        assert wait_until(lambda: state.get_prediction(prediction.id).status == "succeeded", 30), state.get_prediction(
            prediction.id
        )
        thread.join(15)
        assert result == [0]  # idled out; the model container's server is left running
        assert cog.alive()
        # no source was unpacked and no environment built
        assert not (work / "versions").exists() and not (tmp_path / "no-envs").exists()
        return state.get_prediction(prediction.id)
    finally:
        cog.kill()


def test_external_server_reports_starting_until_something_listens():
    server = ExternalCogServer(f"http://127.0.0.1:{free_port()}")
    assert server.health(timeout=0.2).status == "STARTING"
    result = server.wait_ready(timeout=0.3, interval=0.05)
    assert result.status == "TIMEOUT" and "not ready" in result.error


def test_runner_uses_the_model_containers_cog_server_for_image_versions(
    services,
    base_env,
    tmp_path,
    monkeypatch,
):
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    done = _predict_on_image(services, base_env, tmp_path)
    assert done.output == "hello sidecar"
    assert "Waiting for the model image's cog server" in done.logs
    assert "capacity_time" not in done.metrics  # not on ECS


def test_cold_boot_phases_from_ecs_reach_the_prediction(services, base_env, tmp_path, monkeypatch):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_GET(self):  # noqa: N802
            body = json.dumps(ECS_TASK).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    meta = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=meta.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{meta.server_address[1]}/v4/x"
    try:
        done = _predict_on_image(services, base_env, tmp_path, spawned_at=ECS_SPAWNED, ecs_metadata_uri=uri)
    finally:
        meta.shutdown()
        meta.server_close()
    assert done.output == "hello sidecar"
    assert done.metrics["capacity_time"] == 90.25 and done.metrics["image_pull_time"] == 40.5
    assert "Capacity provisioning" in done.logs and "Image pull: 40.50 s" in done.logs
    assert done.metrics["queue_time"] >= 0


def test_a_prediction_the_runner_cannot_start_fails_and_the_runner_goes_on(
    services,
    base_env,
    tmp_path,
    monkeypatch,
):
    """An unexpected error while starting one prediction fails that prediction with the reason;
    the runner keeps serving (it used to die and be restarted, again and again)."""
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    real = RunnerProcess.model_input

    def flaky(self, value, prediction_id):
        if value.get("prompt") == "boom":
            raise RuntimeError("input preparation broke")
        return real(self, value, prediction_id)

    monkeypatch.setattr(RunnerProcess, "model_input", flaky)
    model_dir = tmp_path / "image"
    shutil.copytree(MODELS["hello"], model_dir)
    schema = generate_schema(model_dir)
    write_schema(model_dir, schema)
    runner_port = free_port()
    cog = CogServer(model_dir, base_env, log_path=tmp_path / "cog.log").start()
    try:
        state = services.state
        services.accounts.ensure_account("alice")
        alice = state.get_account("alice")
        state.create_model(Model(owner="alice", name="hello", created_at="2026-01-01T00:00:00.000000Z"))
        version = Version(
            id=VERSION,
            owner="alice",
            name="hello",
            created_at="2026-01-01T00:00:00.000000Z",
            openapi_schema=schema,
            kind="image",
            image="r/x@sha256:" + VERSION,
        )
        state.put_version(version)
        model = state.get_model("alice", "hello")
        bad = services.predictions.create(alice, model, version, {"input": {"prompt": "boom"}})
        good = services.predictions.create(alice, model, version, {"input": {"prompt": "fine"}})
        runner = RunnerProcess(
            services,
            RunnerConfig(
                pool=bad.pool,
                work_root=tmp_path / "work",
                env_cache=tmp_path / "no-envs",
                idle_timeout=0.5,
                cog_url=cog.url,
                http_port=runner_port,
            ),
        )
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
        thread.start()
        assert wait_until(lambda: state.get_prediction(good.id).status == "succeeded", 30)
        thread.join(15)
        failed = state.get_prediction(bad.id)
        assert failed.status == "failed" and "input preparation broke" in failed.error
        assert state.get_prediction(good.id).output == "hello fine"
        assert result == [0]
    finally:
        cog.kill()
