"""The environment section: how long a model environment takes to build, pip vs uv, each with an
empty cache (cold) and again with the cache the first build filled (warm).

Each (example, installer) pair builds in a fresh temporary cache root, so no environment is reused:
cold = nothing in the installer's cache, warm = the same build again after removing the environment
but keeping the cache (pip's: PIP_CACHE_DIR in the root; uv's: `.uv-cache` in the root, as the
runners use it). Local wheels (`find-links`, e.g. the torch 2.13.0 CPU wheel) are read from disk
either way. Builds run in the order pip cold, uv cold, pip warm, uv warm, so load spikes on the
shared machine hit both installers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import EXAMPLES

EXAMPLES_BY_LEVEL = {"none": (), "light": ("whisper",), "full": ("embeddings", "whisper")}
INSTALLERS = ("pip", "uv")


@contextlib.contextmanager
def _pip_cache(path: Path):
    old = os.environ.get("PIP_CACHE_DIR")
    os.environ["PIP_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PIP_CACHE_DIR", None)
        else:
            os.environ["PIP_CACHE_DIR"] = old


def _build_once(example: str, root: Path, installer: str, timeout: float) -> dict[str, Any]:
    from cogplane.environments import EnvironmentBuildError, ensure_environment, environment_size
    from gpu_runner.cog_server import read_cog_config

    model_dir = EXAMPLES / example
    config = read_cog_config(model_dir)
    started = time.monotonic()
    try:
        with _pip_cache(root / "pip-cache"):
            env = ensure_environment(config, model_dir, root, installer=installer, timeout=timeout)
    except EnvironmentBuildError as exc:
        return {"ok": False, "error": exc.message, "seconds": round(time.monotonic() - started, 2)}
    seconds = time.monotonic() - started
    size = environment_size(env)
    shutil.rmtree(env)  # the next build of this root starts without an environment
    return {"ok": True, "seconds": round(seconds, 2), "env_mb": round(size / 1e6)}


def environment_builds(examples: tuple[str, ...], timeout: float, say=print) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for example in examples:
        roots = {i: Path(tempfile.mkdtemp(prefix=f"cogplane-bench-env-{i}-")) for i in INSTALLERS}
        try:
            times: dict[str, dict[str, Any]] = {i: {} for i in INSTALLERS}
            for phase in ("cold", "warm"):
                for installer in INSTALLERS:
                    say(f"environment examples/{example}: {installer} {phase} cache ...")
                    times[installer][phase] = _build_once(example, roots[installer], installer, timeout)
                    say(f"  {times[installer][phase]}")
            for installer in INSTALLERS:
                rows.append({"model": f"examples/{example}", "installer": installer, **times[installer]})
        finally:
            for root in roots.values():
                shutil.rmtree(root, ignore_errors=True)
    return rows
