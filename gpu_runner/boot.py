"""Boot: from a pool's name to a READY cog server.

Resolve the pool's version (`v-`/`t-` name it; `d-{owner}.{name}.{version id}` a deployment's),
prepare what a source version needs (its unpacked bundle, its environment — built or found in the
cache, its build output in the version's build log — and a trained version's weights), then start
the cog server (ours for a source version; the model container's, at COG_URL, for an image
version) and wait until it is READY. What happens along the way goes to the waiting prediction's
logs through a `LogBuffer`; the phases' times become the cold prediction's metrics.

It knows nothing of the queue, the loopback server or the recorder.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cogplane.builds import BuildLog
from cogplane.bundle import unpack_bundle
from cogplane.cogconfig import ConfigError, effective_concurrency
from cogplane.domain import pools
from cogplane.domain.entities import Version
from cogplane.domain.status import BuildStatus
from cogplane.environments import EnvironmentBuildError, LogFn, build_record, ensure_environment
from cogplane.schema import is_iterator_output, training_view
from gpu_runner.cog_client import SETUP_FAILED, CogClient
from gpu_runner.cog_server import CogServer, clean_setup_error, model_setup_lines, write_schema
from gpu_runner.external_server import ExternalCogServer

log = logging.getLogger("cogplane.runner")


class LogBuffer:
    """Collects boot/build lines for a waiting prediction and writes them at most every 0.5 s
    (`append(prediction_id, text)`); with no prediction waiting, the lines are dropped."""

    def __init__(self, append: Callable[[str, str], None], prediction_id: str | None) -> None:
        self.append = append
        self.prediction_id = prediction_id
        self.lines: list[str] = []
        self.last = 0.0

    def __call__(self, line: str) -> None:
        self.lines.append(line.rstrip("\n") + "\n")
        if time.monotonic() - self.last > 0.5:
            self.flush()

    def flush(self) -> None:
        if not self.prediction_id or not self.lines:
            return
        text, self.lines = "".join(self.lines), []
        self.last = time.monotonic()
        self.append(self.prediction_id, text)


@dataclass(frozen=True)
class BootConfig:
    pool: str
    runner_id: str
    work_root: Path
    env_cache: Path
    cog_url: str  # an image version's cog server (the model container's)
    setup_timeout: float | None = 600.0
    spawned_at: float | None = None  # unix time the dispatcher started the runner (for boot_time)
    ecs_metadata_uri: str = ""  # ECS's task metadata endpoint (cold-boot phases; empty off ECS)


class Boot:
    """Boots one pool's cog server, and restarts it when it crashed."""

    def __init__(self, services: Any, config: BootConfig) -> None:
        self.services = services
        self.state = services.state
        self.blobs = services.blobs
        self.clock = services.clock
        self.config = config
        # a training pool runs trainings: cog in train mode, `/trainings/{id}`, TrainingInput
        parsed = pools.parse(config.pool)
        self.training = parsed is not None and parsed.training
        self.version: Version | None = None
        self.model_dir: Path | None = None
        self.env_dir: Path | None = None
        self.weights_path: Path | None = None  # a trained version's weights (COG_WEIGHTS)
        self.server: CogServer | ExternalCogServer | None = None
        self.cog: CogClient | None = None  # speaks to self.server
        self.concurrency = 1
        self.iterator_output = False
        self.cold_metrics: dict[str, float] = {}
        self.server_restarts = 0

    # --- the version ----------------------------------------------------------------------
    def resolve_version(self) -> Version:
        pool = pools.parse(self.config.pool)
        if pool is None:
            raise RuntimeError(f"unknown pool {self.config.pool!r}")
        version_id = pool.version_id
        if pool.kind in ("version", "training"):
            found = self.state.find_versions(version_id)
            if not found:
                raise RuntimeError(f"no version {version_id} exists")
            return found[0]
        owner, name = pool.owner, pool.name
        if pool.kind == "deployment" and owner and name:
            # The pool's version is the one in its name, not the deployment's current one: after a
            # release to another version this pool still drains its work with its own version.
            deployment = self.state.get_deployment(owner, name)
            if deployment is not None:
                m_owner, _, m_name = deployment.model.partition("/")
                version = self.state.get_version(m_owner, m_name, version_id)
                if version is not None:
                    return version
            found = self.state.find_versions(version_id)  # the deployment was deleted meanwhile
            if not found:
                raise RuntimeError(f"deployment {owner}/{name}: no version {version_id} exists")
            return found[0]
        raise RuntimeError(f"unknown pool {self.config.pool!r}")

    def prepare_source(self, version: Version, on_log: LogFn) -> Path:
        """Unpack the bundle once per version (atomic rename: runners of a pool share it)."""
        target = self.config.work_root / "versions" / version.id
        if (target / "cog.yaml").is_file():
            return target
        on_log(f"Fetching the model source ({version.size / 1e6:.1f} MB)")
        tmp = self.config.work_root / "versions" / f".{version.id}.{self.config.runner_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        unpack_bundle(self.blobs.get(version.bundle_key), tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another runner won the race: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def prepare_environment(self, version: Version, model_dir: Path, on_log: LogFn) -> Path:
        """The version's environment (built, or found in the cache). Its build output goes to the
        version's build log (cogplane.builds), not to the prediction: that gets one line."""
        build_log = BuildLog(self.blobs, version.id)
        started: dict[str, float] = {}

        def on_build_start() -> None:  # the prediction's one line for this phase
            started["at"] = time.monotonic()
            build_log.building = True
            build_log.save(BuildStatus.BUILDING, started_at=self.clock.now())
            on_log("Building the model's environment (its log is in the version's build log)")

        try:
            env_dir = ensure_environment(
                version.config,
                model_dir,
                self.config.env_cache,
                on_log=build_log,
                on_build_start=on_build_start,
                installer=self.services.settings.installer,
            )
        except EnvironmentBuildError as exc:
            build_log.save(BuildStatus.FAILED, error=exc.message, completed_at=self.clock.now())
            raise
        metadata, env_log = build_record(env_dir)
        if "at" not in started and env_log:
            build_log(f"cogplane: environment {env_dir.name[:12]} was already built; the log of that build:")
            build_log.lines.extend(env_log.rstrip("\n").splitlines())
        build_log.save(
            BuildStatus.SUCCEEDED,
            environment=env_dir.name[:12],
            python_version=metadata.get("python"),
            build_seconds=metadata.get("build_seconds"),
            completed_at=self.clock.now(),
        )
        return env_dir

    # --- the cog server -----------------------------------------------------------------------------
    @property
    def run_schema(self) -> dict[str, Any]:
        """The schema of what this runner runs: a training pool's Input/Output are the
        version's TrainingInput/TrainingOutput (the schema file cog reads stays the version's)."""
        schema = (self.version.openapi_schema or {}) if self.version else {}
        return training_view(schema) if self.training else schema

    def prepare_weights(self, version: Version, on_log: LogFn) -> Path | None:
        """A trained version's weights, fetched once per version to a local file: cog passes
        COG_WEIGHTS to `setup(self, weights)` as given, so a path works with open()/Path()."""
        if not version.weights_key:
            return None
        name = os.path.basename(version.weights_key) or "weights"
        target = self.config.work_root / "weights" / version.id / name
        if not target.exists():
            on_log(f"Fetching the trained weights ({version.trained_from} + {name})")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.{self.config.runner_id}")
            tmp.write_bytes(self.blobs.get(version.weights_key))
            os.replace(tmp, target)  # atomic: runners of a pool share it
        return target

    def run(self, on_log: LogBuffer) -> tuple[bool, str]:
        """Make the cog server READY. Returns (ok, reason). Boot lines go to `on_log`."""
        t0, wall0 = time.monotonic(), time.time()
        from gpu_runner.ecs_metadata import boot_phases, task_metadata

        phases = (
            boot_phases(self.config.spawned_at, task_metadata(self.config.ecs_metadata_uri))
            if not self.server_restarts
            else {}
        )
        try:
            self.version = self.version or self.resolve_version()
            on_log(f"Booting {self.version.model} (cold start: no runner was warm)")
            if "capacity_time" in phases:
                on_log(
                    f"Capacity provisioning (task placed, instance started if none was free): "
                    f"{phases['capacity_time']:.2f} s"
                )
            if "image_pull_time" in phases:
                on_log(f"Image pull: {phases['image_pull_time']:.2f} s")
            if self.version.kind == "image":  # the model container serves cog: nothing to build
                on_log(f"Waiting for the model image's cog server ({self.version.image})")
            else:
                self.model_dir = self.prepare_source(self.version, on_log)
                self.env_dir = self.prepare_environment(self.version, self.model_dir, on_log)
                write_schema(self.model_dir, self.version.openapi_schema)
                self.weights_path = self.prepare_weights(self.version, on_log)
        except EnvironmentBuildError as exc:
            on_log("Building the model's environment failed (its log is in the version's build log)")
            on_log.flush()
            return False, f"Building the model's environment failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - any boot failure fails the waiting work, clearly
            on_log.flush()
            log.exception("boot failed")
            return False, f"The model could not be prepared: {exc}"
        self.iterator_output = not self.training and is_iterator_output(self.version.openapi_schema or {})
        t1 = time.monotonic()
        ok, reason = self.start_server(on_log)
        t2 = time.monotonic()
        # boot: from the runner's spawn (or this boot's start) until the cog server is launched;
        # setup: from then until cog says READY (imports + the model's setup())
        boot_start = (
            t0 - max(0.0, wall0 - self.config.spawned_at) if self.config.spawned_at and not self.server_restarts else t0
        )
        self.cold_metrics = {
            "boot_time": round(t1 - min(t0, boot_start), 4),
            "setup_time": round(t2 - t1, 4),
            **phases,
        }  # capacity_time and image_pull_time are parts of boot_time
        on_log(
            f"Model ready (boot {self.cold_metrics['boot_time']:.2f} s, setup {self.cold_metrics['setup_time']:.2f} s)"
            if ok
            else "Model setup failed"
        )
        on_log.flush()
        return ok, reason

    def start_server(self, on_log: LogFn) -> tuple[bool, str]:
        if self.version is None:
            raise RuntimeError("start_server() before the version is resolved")
        config = self.version.config or {}
        # concurrency.max, else @concurrent(max=N) read from the source as cog's CLI reads it
        try:
            self.concurrency = effective_concurrency(config, self.model_dir if self.version.kind != "image" else None)
        except ConfigError as exc:  # refused at push by the CLI and the API; not expected here
            return False, f"The model's cog.yaml is invalid: {exc}"
        if self.version.kind == "image":
            self.server = ExternalCogServer(self.config.cog_url)
        else:
            if self.model_dir is None or self.env_dir is None:
                raise RuntimeError("start_server() before the source and its environment")
            # no upload URL: file outputs come back as data URIs in the model's order (map_output)
            weights = self.weights_path
            self.server = CogServer(
                self.model_dir,
                self.env_dir,
                concurrency=self.concurrency,
                setup_timeout=self.config.setup_timeout,
                log_path=self.config.work_root / "logs" / f"{self.config.runner_id}.log",
                config=config,
                env={"COG_WEIGHTS": str(weights)} if weights else None,
                train=self.training,
            )
        self.server.start()
        health = self.server.wait_ready(timeout=(self.config.setup_timeout or 600) + 30)
        if health.serving:
            self.cog = self.server.client("trainings" if self.training else "predictions")
            # what the model printed while it was loaded and in setup()
            for line in model_setup_lines(health.setup_logs).splitlines():
                on_log(line)
            return True, ""
        if health.status == SETUP_FAILED:
            detail = clean_setup_error(health.error)
        else:
            detail = health.error or health.status
        self.server.stop(grace=2)
        # a failed setup's health body holds only the error: the model's output (its traceback
        # too) is in the server's log, complete once the server has stopped
        output = (
            self.server.setup_output() if isinstance(self.server, CogServer) else model_setup_lines(health.setup_logs)
        )
        for line in output.splitlines():
            on_log(line)
        return False, f"Model setup failed: {detail}"

    def restart(self) -> tuple[bool, str]:
        """A crashed or UNHEALTHY cog server never recovers: start a new one."""
        if self.server:
            self.server.stop(grace=2)
        self.server_restarts += 1
        return self.start_server(lambda line: None)

    def stop(self, grace: float) -> None:
        if self.server:
            self.server.stop(grace=grace)
