"""Shared by the runner suites: the example models, a polling helper and the cog-only environment."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_runner.cog_server import read_cog_config
from gpu_runner.environment import ensure_environment

REPO = Path(__file__).resolve().parents[2]
MODELS = {
    "hello": REPO / "examples" / "hello",
    "setup_fails": REPO / "tests" / "fixtures" / "runner_models" / "setup_fails",
    "crash": REPO / "tests" / "fixtures" / "runner_models" / "crash",
    "slow": REPO / "tests" / "fixtures" / "runner_models" / "slow",
}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cog-only environment that all these models share (built once per test session)."""
    cache = tmp_path_factory.getbasetemp() / "envs"
    return ensure_environment(read_cog_config(MODELS["hello"]), MODELS["hello"], cache)
