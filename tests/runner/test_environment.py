"""gpu_runner.environment: environments built from cog.yaml, cached by content, safe to race."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gpu_runner.environment import (
    COG_VERSION,
    READY_MARKER,
    EnvironmentBuildError,
    ensure_environment,
    environment_spec,
)

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"
BASE_CONFIG = {"build": {"python_version": "3.11"}, "predict": "predict.py:Predictor"}


def config_with(*packages: str, **build: object) -> dict:
    return {"build": {"python_version": "3.11", "python_packages": list(packages), **build}}


# -- keys (no pip) --------------------------------------------------------------------------------


def test_key_ignores_package_order_and_our_own_cog_pin(tmp_path: Path) -> None:
    a = environment_spec(config_with("b==1", "a==2"), tmp_path)
    b = environment_spec(config_with("a==2", f"cog=={COG_VERSION}", "b==1"), tmp_path)
    assert a.key == b.key
    assert a.packages == ("a==2", "b==1")


def test_a_models_other_cog_pin_is_replaced_and_logged(tmp_path: Path) -> None:
    logs: list[str] = []
    spec = environment_spec(config_with("cog==0.16.0", "coglet", "numpy==2.4.6"), tmp_path, logs.append)
    assert spec.packages == ("numpy==2.4.6",)
    assert spec.key == environment_spec(config_with("numpy==2.4.6"), tmp_path).key
    assert any("cog==0.16.0" in line for line in logs)


def test_key_changes_with_packages_requirements_and_python(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy==2.4.6\n")
    base = environment_spec(BASE_CONFIG, tmp_path).key
    with_package = environment_spec(config_with("numpy==2.4.6"), tmp_path).key
    with_file = environment_spec(config_with(python_requirements="requirements.txt"), tmp_path).key
    (tmp_path / "requirements.txt").write_text("numpy==2.4.5\n")
    with_other_file = environment_spec(config_with(python_requirements="requirements.txt"), tmp_path).key
    assert len({base, with_package, with_file, with_other_file}) == 4


def test_models_without_packages_share_one_base_environment(tmp_path: Path) -> None:
    assert environment_spec({}, tmp_path).key == environment_spec(BASE_CONFIG, HELLO).key


def test_requirements_file_must_exist_inside_the_model(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentBuildError, match="not found"):
        environment_spec(config_with(python_requirements="requirements.txt"), tmp_path)
    (tmp_path / "outside.txt").write_text("numpy\n")
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(EnvironmentBuildError, match="inside the model"):
        environment_spec(config_with(python_requirements="../outside.txt"), model)


# -- real builds ----------------------------------------------------------------------------------


def test_builds_hello_environment_then_reuses_it(tmp_path: Path) -> None:
    cache = tmp_path / "envs"
    logs: list[str] = []
    started = time.monotonic()
    env = ensure_environment(BASE_CONFIG, HELLO, cache, on_log=logs.append)
    cold = time.monotonic() - started
    assert (env / READY_MARKER).is_file()
    assert env.parent == cache
    assert any("Successfully installed" in line for line in logs), logs  # pip's output, line by line
    version = subprocess.run(
        [env / "bin" / "python", "-c", "import cog, coglet; print(cog.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == COG_VERSION
    # nothing in bin/ points at the temporary build folder it was renamed from
    for script in (env / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            assert b".building" not in script.read_bytes(), script
    assert not list((cache / ".building").iterdir())

    again: list[str] = []
    started = time.monotonic()
    assert ensure_environment(BASE_CONFIG, HELLO, cache, on_log=again.append) == env
    cached = time.monotonic() - started
    assert again == []
    print(f"hello env: cold {cold:.2f} s, cached {cached * 1000:.1f} ms")


def test_two_racing_builders_build_once(tmp_path: Path) -> None:
    cache = tmp_path / "envs"
    logs: list[str] = []
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(ensure_environment(BASE_CONFIG, HELLO, cache, on_log=logs.append))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(results) == 2 and results[0] == results[1]
    assert sum("building environment" in line for line in logs) == 1
    assert any("waiting for another runner" in line for line in logs)


def test_interrupted_build_leftovers_are_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "envs"
    key = environment_spec(BASE_CONFIG, HELLO).key
    (cache / key / "bin").mkdir(parents=True)  # a folder without .ready: not a usable environment
    (cache / ".building" / f"{key}-99999").mkdir(parents=True)
    env = ensure_environment(BASE_CONFIG, HELLO, cache)
    assert env == cache / key and (env / "bin" / "python").exists()
    assert not (cache / ".building" / f"{key}-99999").exists()


def test_pip_failure_raises_with_the_logs(tmp_path: Path) -> None:
    cache = tmp_path / "envs"
    logs: list[str] = []
    config = config_with("cogplane-test-no-such-package==0.0.1")
    with pytest.raises(EnvironmentBuildError) as info:
        ensure_environment(config, HELLO, cache, on_log=logs.append)
    assert "pip install failed" in info.value.message
    assert "cogplane-test-no-such-package" in info.value.logs
    assert info.value.logs.splitlines() == logs
    key = environment_spec(config, HELLO).key
    assert not (cache / key).exists()
    assert not list((cache / ".building").iterdir())


def test_python_requirements_file_is_installed(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(HELLO, model)
    # a local wheel-free requirement that is already on disk for cog: no network needed
    (model / "requirements.txt").write_text("structlog\n")
    config = config_with(python_requirements="requirements.txt")
    logs: list[str] = []
    env = ensure_environment(config, model, tmp_path / "envs", on_log=logs.append)
    assert any("-r" in line and "requirements.txt" in line for line in logs)
    subprocess.run([env / "bin" / "python", "-c", "import structlog, cog"], check=True)
