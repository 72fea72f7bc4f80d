"""The Cog behaviours real models rely on, through the real runner (in-process) and a real cog 0.23.1
server: cog.yaml `environment:`, `@concurrent(max=N)`, and a list of file outputs in the model's order."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from cogplane.domain.status import TERMINAL
from cogplane.domain.timefmt import parse
from cogplane.push import prepare
from cogplane.services.presenters import BLOB_PREFIX
from gpu_runner.cog_server import CogServer
from gpu_runner.runner import RunnerConfig, RunnerProcess
from tests.runner.conftest import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runner_models"


def _predict(
    services,
    base_env: Path,
    tmp_path: Path,
    model: str,
    inputs: list[dict],
    timeout: float = 120,
) -> list:
    """Push the fixture model as a source version (as `cogplane push` does), create one prediction
    per input, run one runner for its pool until it idles out, and return the finished predictions."""
    prepared = prepare(FIXTURES / model)
    alice = services.accounts.ensure_account("alice")
    services.catalog.create_model(alice, {"owner": "alice", "name": model})
    version, _ = services.catalog.push_version(
        alice,
        "alice",
        model,
        bundle=prepared.bundle,
        schema=prepared.schema,
        config=prepared.config,
        cog_version="0.23.1",
    )
    record = services.state.get_model("alice", model)
    predictions = [services.predictions.create(alice, record, version, {"input": i}) for i in inputs]
    runner = RunnerProcess(
        services,
        RunnerConfig(
            pool=predictions[0].pool, work_root=tmp_path / "work", env_cache=base_env.parent, idle_timeout=1.0
        ),
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(runner.run()), daemon=True)
    thread.start()
    try:
        assert wait_until(
            lambda: all(services.state.get_prediction(p.id).status in TERMINAL for p in predictions), timeout
        ), [services.state.get_prediction(p.id) for p in predictions]
    finally:
        runner.stopping.set()
        thread.join(30)
    assert result == [0]
    return [services.state.get_prediction(p.id) for p in predictions]


def test_environment_from_cog_yaml_reaches_the_model(services, base_env, tmp_path):
    """cog's own env_vars integration test: a model reading os.environ gets cog.yaml's values."""
    test_var, name, path = _predict(
        services, base_env, tmp_path, "envvars", [{"name": "TEST_VAR"}, {"name": "NAME"}, {"name": "COGPLANE_TOKEN"}]
    )
    assert [p.status for p in (test_var, name, path)] == ["succeeded"] * 3, test_var.error
    assert test_var.output == "ENV[TEST_VAR]=test_value"
    assert name.output == "ENV[NAME]=michael"
    assert path.output == "ENV[COGPLANE_TOKEN]=None"  # the platform's own never reach the model


def test_concurrent_decorator_runs_four_predictions_at_once(services, base_env, tmp_path):
    """cog 0.23's `@concurrent(max=4)` (hello-concurrency): the runner sends four predictions to its
    cog server at once and they overlap in time, in the platform's records and in the model itself."""
    done = _predict(services, base_env, tmp_path, "concurrency", [{"seconds": 3}] * 4)
    assert [p.status for p in done] == ["succeeded"] * 4, [p.error for p in done]
    # the platform's intervals: every prediction started before any of them completed
    starts = [parse(p.started_at) for p in done]
    ends = [parse(p.completed_at) for p in done]
    assert max(starts) < min(ends), list(zip(starts, ends, strict=True))
    # the model's own intervals (what cog really ran at once)
    model = [tuple(float(x) for x in p.output.split()) for p in done]
    assert max(s for s, _ in model) < min(e for _, e in model), model


def test_concurrency_comes_from_the_decorator_unless_cog_yaml_says(base_env, tmp_path):
    folder = FIXTURES / "concurrency"
    assert CogServer(folder, base_env, log_path=tmp_path / "log").environment(5000)["COG_MAX_CONCURRENCY"] == "4"
    config = {"run": "run.py:Runner", "concurrency": {"max": 2}}
    server = CogServer(folder, base_env, log_path=tmp_path / "log", config=config)
    assert server.environment(5000)["COG_MAX_CONCURRENCY"] == "2"
    assert prepare(folder, with_schema=False).config["concurrency"] == {"max": 4}  # as run.cog.config


@pytest.mark.slow
def test_a_list_of_files_comes_back_in_the_models_order(services, base_env, tmp_path):
    """coglet uploads the files of a list in parallel when it has an --upload-url and lists them as
    the uploads finish (with the runner started that way, this model's lists came back as
    [baz, bar, qux, foo] three times out of three); the runner takes them as data URIs instead, in
    the model's order. Three predictions, each checked file by file."""
    done = _predict(services, base_env, tmp_path, "filelist", [{"tag": f"t{i}"} for i in range(3)])
    for i, prediction in enumerate(done):
        assert prediction.status == "succeeded", prediction.error
        assert all(isinstance(o, str) and o.startswith(BLOB_PREFIX) for o in prediction.output)
        keys = [o[len(BLOB_PREFIX) :] for o in prediction.output]
        heads = [services.blobs.get(k).split(b"\n", 1)[0].decode() for k in keys]
        assert heads == [f"{n} t{i}" for n in ("foo", "bar", "baz", "qux")]
        assert [len(services.blobs.get(k)) for k in keys] == [20_000_000, 10, 200_000, 1_000]
        assert [k.rsplit("/", 1)[1] for k in keys] == [f"output_{n}.txt" for n in range(4)]
        assert services.blobs.head(keys[0]).content_type.startswith("text/plain")


def test_image_version_concurrency_from_its_config_label(services, base_env, tmp_path):
    """An image version (the model container's cog, started by someone else) whose run.cog.config
    says concurrency.max 4: the runner sends four at once and they overlap."""
    from cogplane.domain.entities import Model, Version
    from cogplane.schema import generate_schema
    from gpu_runner.cog_server import free_port, write_schema

    model_dir = tmp_path / "image"
    shutil.copytree(FIXTURES / "concurrency", model_dir)
    schema = generate_schema(model_dir)
    write_schema(model_dir, schema)
    cog = CogServer(model_dir, base_env, log_path=tmp_path / "cog.log").start()  # COG_MAX_CONCURRENCY=4
    try:
        alice = services.accounts.ensure_account("alice")
        services.state.create_model(Model(owner="alice", name="img", created_at="2026-01-01T00:00:00.000000Z"))
        version = Version(
            id="ab" * 32,
            owner="alice",
            name="img",
            created_at="2026-01-01T00:00:00.000000Z",
            openapi_schema=schema,
            kind="image",
            image="r.example/x@sha256:" + "ab" * 32,
            config={"run": "run.py:Runner", "concurrency": {"max": 4}},
        )
        services.state.put_version(version)
        record = services.state.get_model("alice", "img")
        predictions = [services.predictions.create(alice, record, version, {"input": {"seconds": 3}}) for _ in range(4)]
        runner = RunnerProcess(
            services,
            RunnerConfig(
                pool=predictions[0].pool,
                work_root=tmp_path / "work",
                env_cache=tmp_path / "no-envs",
                idle_timeout=1.0,
                cog_url=cog.url,
                http_port=free_port(),
            ),
        )
        thread = threading.Thread(target=lambda: runner.run(), daemon=True)
        thread.start()
        assert wait_until(lambda: all(services.state.get_prediction(p.id).status in TERMINAL for p in predictions), 120)
        runner.stopping.set()
        thread.join(30)
        done = [services.state.get_prediction(p.id) for p in predictions]
    finally:
        cog.kill()
    assert [p.status for p in done] == ["succeeded"] * 4, [p.error for p in done]
    assert runner.concurrency == 4
    starts, ends = [parse(p.started_at) for p in done], [parse(p.completed_at) for p in done]
    assert max(starts) < min(ends)


def test_map_output_stores_data_uris_where_the_schema_has_files(services, tmp_path):
    """Without cog: data URIs become stored files in place (once per prediction for an iterator's
    repeated webhooks); a `data:` string the schema calls plain text stays text."""
    import base64

    from cogplane.domain.entities import Version
    from gpu_runner.recorder import InFlight, Recorder

    def version(output: dict) -> Version:
        schema = {"components": {"schemas": {"Input": {}, "Output": output}}}
        return Version(
            id="cd" * 32, owner="a", name="b", created_at="2026-01-01T00:00:00.000000Z", openapi_schema=schema
        )

    recorder = Recorder(services, runner_id="r-test")
    uri = "data:text/plain;base64," + base64.b64encode(b"first").decode()
    recorder.schema = version(
        {"type": "array", "items": {"type": "string", "format": "uri"}, "x-cog-array-type": "iterator"}
    ).openapi_schema
    flight = InFlight(
        job=None, prediction_id="pid", created_at="", started_mono=0.0, log_prefix="", metrics={}, iterator=True
    )
    first = recorder.map_output([uri], flight)
    again = recorder.map_output([uri, "data:image/png;base64,iVBO"], flight)
    assert again[0] == first[0] and len(again) == 2  # stored once, the same reference
    keys = [ref[len(BLOB_PREFIX) :] for ref in again]
    assert services.blobs.get(keys[0]) == b"first" and keys[0].endswith("/output_0.txt")
    assert keys[1].endswith("/output_1.png") and services.blobs.head(keys[1]).content_type == "image/png"
    recorder.schema = version({"title": "Output"}).openapi_schema  # Any: no type, so a data URI is a file
    stored = recorder.map_output("data:,hello%20there")
    assert services.blobs.get(stored[len(BLOB_PREFIX) :]) == b"hello there"
    recorder.schema = version({"type": "string"}).openapi_schema
    assert recorder.map_output("data:,not a file") == "data:,not a file"
    recorder.schema = version(
        {"type": "object", "properties": {"img": {"type": "string", "format": "uri"}, "note": {"type": "string"}}}
    ).openapi_schema
    out = recorder.map_output({"img": uri, "note": uri})
    assert out["img"].startswith(BLOB_PREFIX) and out["img"].endswith("/output_img.txt") and out["note"] == uri
