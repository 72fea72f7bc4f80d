"""Issue 10: the runner sends an environment's build output and the platform's warnings about
cog.yaml to the version's build log (cogplane.builds), and at most one line to the prediction."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogplane import builds
from cogplane.domain.entities import Version
from cogplane.environments import ensure_environment
from gpu_runner.runner import RunnerConfig, RunnerProcess

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"


@pytest.mark.slow  # builds a cog-only environment
def test_warnings_and_the_shared_environments_build_go_to_the_versions_build_log(services, tmp_path):
    cache = tmp_path / "envs"
    # another version built the cog-only environment (its output is kept with it)
    built = ensure_environment({"build": {"python_version": "3.11"}}, HELLO, cache)
    version = Version(
        id="ab" * 32,
        owner="alice",
        name="hello",
        created_at="2026-01-01T00:00:00Z",
        openapi_schema={},
        config={"build": {"python_version": "3.0"}, "predict": "predict.py:Predictor"},
    )
    runner = RunnerProcess(services, RunnerConfig(pool=f"v-{version.id}", work_root=tmp_path / "work", env_cache=cache))
    prediction_lines: list[str] = []
    env = runner.boot.prepare_environment(version, HELLO, prediction_lines.append)
    assert env == built
    assert prediction_lines == []  # a cached environment: nothing for the prediction
    build = builds.read(services.blobs, version)
    assert build["status"] == "succeeded" and build["environment"] == built.name[:12]
    assert "python 3.0 is not installed here" in build["logs"]
    assert "was already built" in build["logs"] and "cog==0.23.1" in build["logs"]  # that build's pip command
