"""gpu_runner.boot against a fake cog: an image version's pool boots by waiting for the model
container's cog server (no source, no environment), with its lines for the waiting prediction,
its phases' times, and a clear reason when setup fails."""

from __future__ import annotations

from pathlib import Path

from cogplane.domain.entities import Version
from gpu_runner.boot import Boot, BootConfig, LogBuffer
from tests.runner.conftest import FakeCog

VERSION = "bb" * 32


def _boot(services, tmp_path: Path, cog: FakeCog, pool: str = f"v-{VERSION}", **version) -> Boot:
    services.state.put_version(
        Version(
            id=VERSION,
            owner="alice",
            name="hello",
            created_at="2026-01-01T00:00:00Z",
            openapi_schema={"components": {"schemas": {"Input": {}, "Output": {"type": "string"}}}},
            kind="image",
            image="r.example/x@sha256:" + VERSION,
            **version,
        )
    )
    config = BootConfig(
        pool=pool, runner_id="r-1", work_root=tmp_path / "work", env_cache=tmp_path / "envs", cog_url=cog.url
    )
    return Boot(services, config)


def test_an_image_version_waits_for_its_cog_server(services, tmp_path, fake_cog, monkeypatch):
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    boot = _boot(services, tmp_path, fake_cog, config={"run": "run.py:Runner", "concurrency": {"max": 3}})
    written: list[tuple[str, str]] = []
    on_log = LogBuffer(lambda pid, text: written.append((pid, text)), "p1")
    ok, reason = boot.run(on_log)
    assert ok and reason == ""
    text = "".join(t for _, t in written)
    assert {pid for pid, _ in written} == {"p1"}
    assert "Waiting for the model image's cog server" in text and "loaded\n" in text and "Model ready" in text
    assert set(boot.cold_metrics) == {"boot_time", "setup_time"} and boot.concurrency == 3
    assert boot.cog is not None and boot.cog.route == "predictions" and boot.cog.port == fake_cog.port
    assert not (tmp_path / "work").exists() and not (tmp_path / "envs").exists()
    ok, _ = boot.restart()  # another server (here: the same container's) is waited for again
    assert ok and boot.server_restarts == 1


def test_a_failed_setup_is_the_reason(services, tmp_path, fake_cog):
    fake_cog.health = {"status": "SETUP_FAILED", "setup": {"logs": "worker setup failed: RuntimeError: no GPU"}}
    boot = _boot(services, tmp_path, fake_cog)
    lines: list[str] = []
    ok, reason = boot.run(LogBuffer(lambda pid, text: lines.append(text), "p1"))
    assert not ok and reason == "Model setup failed: RuntimeError: no GPU"
    assert "Model setup failed" in "".join(lines)


def test_an_unknown_pool_cannot_be_prepared(services, tmp_path, fake_cog):
    boot = _boot(services, tmp_path, fake_cog, pool="v-" + "cc" * 32)
    ok, reason = boot.run(LogBuffer(lambda pid, text: None, None))
    assert not ok and reason.startswith("The model could not be prepared: no version")
    assert not [r for r in fake_cog.requests if r[0] == "GET"]


def test_a_training_pool_serves_trainings(services, tmp_path, fake_cog):
    boot = _boot(services, tmp_path, fake_cog, pool=f"t-{VERSION}")
    ok, _ = boot.run(LogBuffer(lambda pid, text: None, None))
    assert ok and boot.training and boot.cog is not None and boot.cog.route == "trainings"
    assert not boot.iterator_output
