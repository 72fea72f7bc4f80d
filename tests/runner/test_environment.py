"""cogplane.environments: environments built from cog.yaml, cached by content, safe to race."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cogplane.environments import (
    COG_VERSION,
    METADATA_FILE,
    READY_MARKER,
    UV_CACHE,
    EnvironmentBuildError,
    choose_installer,
    ensure_environment,
    environment_spec,
    pip_index_options,
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


# -- the installer -------------------------------------------------------------------------------


def test_installer_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from cogplane.settings import Settings

    monkeypatch.delenv("COGPLANE_INSTALLER", raising=False)
    assert choose_installer() == "uv"  # uv is a runtime dependency: auto finds it
    assert choose_installer(Settings().installer) == "uv"
    monkeypatch.setenv("COGPLANE_INSTALLER", "pip")
    assert choose_installer(Settings().installer) == "pip"  # read once into the settings, passed down
    assert choose_installer("uv") == "uv"
    monkeypatch.setenv("COGPLANE_INSTALLER", "conda")
    with pytest.raises(ValidationError, match="installer"):
        Settings()
    with pytest.raises(EnvironmentBuildError, match="COGPLANE_INSTALLER"):
        choose_installer("conda")


def test_auto_falls_back_to_pip_without_uv(monkeypatch: pytest.MonkeyPatch) -> None:
    import cogplane.environments as environment

    monkeypatch.setattr(environment, "uv_binary", lambda: None)
    assert choose_installer("auto") == "pip"
    with pytest.raises(EnvironmentBuildError, match="no uv binary"):
        choose_installer("uv")


def test_uv_gets_the_indexes_pip_is_configured_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://pypi.example/simple\nextra-index-url = file:///a file:///b\n"
        "[install]\nfind-links = /wheels-install\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels-env")  # PIP_* wins over the files
    monkeypatch.setenv("PIP_CONSTRAINT", str(tmp_path / "c.txt"))
    pip_index_options.cache_clear()
    try:
        flags, extra = pip_index_options()
    finally:
        pip_index_options.cache_clear()
    pairs = list(zip(flags[::2], flags[1::2], strict=True))
    assert ("--index-url", "https://pypi.example/simple") in pairs
    assert ("--extra-index-url", "file:///a") in pairs and ("--extra-index-url", "file:///b") in pairs
    assert ("--find-links", "/wheels-env") in pairs and ("--find-links", "/wheels-install") not in pairs
    assert ("--constraint", str(tmp_path / "c.txt")) in pairs
    assert extra


# -- real builds ----------------------------------------------------------------------------------


INSTALLED = {"pip": "Successfully installed", "uv": " + cog==" + COG_VERSION}  # each one's own output


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_builds_hello_environment_then_reuses_it(tmp_path: Path, installer: str) -> None:
    cache = tmp_path / "envs"
    logs: list[str] = []
    started = time.monotonic()
    env = ensure_environment(BASE_CONFIG, HELLO, cache, on_log=logs.append, installer=installer)
    cold = time.monotonic() - started
    assert (env / READY_MARKER).is_file()
    assert env.parent == cache
    assert any(INSTALLED[installer] in line for line in logs), logs  # the installer's output, line by line
    assert json.loads((env / METADATA_FILE).read_text())["installer"] == installer
    assert (cache / UV_CACHE).is_dir() == (installer == "uv")  # uv's cache lives beside the environments
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


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_install_failure_raises_with_the_logs(tmp_path: Path, installer: str) -> None:
    cache = tmp_path / "envs"
    logs: list[str] = []
    config = config_with("cogplane-test-no-such-package==0.0.1")
    with pytest.raises(EnvironmentBuildError) as info:
        ensure_environment(config, HELLO, cache, on_log=logs.append, installer=installer)
    assert ("uv pip install failed" if installer == "uv" else "pip install failed") in info.value.message
    assert "cogplane-test-no-such-package" in info.value.logs
    assert info.value.logs.splitlines() == logs
    key = environment_spec(config, HELLO).key
    assert not (cache / key).exists()
    assert not list((cache / ".building").iterdir())


def test_auto_builds_with_pip_where_uv_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cogplane.environments as environment

    broken_uv = tmp_path / "uv"  # a uv that cannot install anything (as uv refusing a legacy package)
    real_uv = environment.uv_binary()
    assert real_uv is not None
    broken_uv.write_text(
        f'#!/bin/sh\n[ "$2" = install ] && {{ echo "uv: cannot build this" >&2; exit 2; }}\nexec {real_uv} "$@"\n'
    )
    broken_uv.chmod(0o755)
    monkeypatch.setattr(environment, "uv_binary", lambda: str(broken_uv))
    monkeypatch.delenv("COGPLANE_INSTALLER", raising=False)
    logs: list[str] = []
    env = ensure_environment(BASE_CONFIG, HELLO, tmp_path / "envs", on_log=logs.append)
    assert json.loads((env / METADATA_FILE).read_text())["installer"] == "pip"
    assert any("uv could not build this environment" in line for line in logs), logs
    # chosen explicitly, uv's failure is the answer
    with pytest.raises(EnvironmentBuildError, match="uv pip install failed"):
        ensure_environment(config_with("six"), HELLO, tmp_path / "envs2", installer="uv")


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
