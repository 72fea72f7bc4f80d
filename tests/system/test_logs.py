"""Issue 10, logs that belong to the model: a prediction's `logs` hold what the model printed
(plus at most one short line per cold-boot phase); the environment build goes to the version's
build log; a failed setup() gives the model's traceback once, without coglet's internals."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.system.conftest import wait_for

pytestmark = pytest.mark.system

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BOOT_PHASES = (
    "Booting ",
    "Capacity provisioning",
    "Image pull",
    "Fetching the model source",
    "Building the model's environment",
    "Model ready",
    "Model setup failed",
)
NOISE = (
    "coglet",
    "slot",
    "sitecustomize",
    "worker setup failed",
    "DeprecationWarning",
    "cogplane:",
    "pip",
    "Collecting",
    "Successfully installed",
    "Requirement already",
    "Resolved ",  # uv's own lines
    "Installed ",
    "Prepared ",
)
# The installer's own line that it installed something: pip's or uv's (the default where uv exists).
INSTALLED = re.compile(r"Successfully installed|Installed \d+ package")


def _done(c, pid: str, timeout: float = 300) -> dict:
    return wait_for(
        lambda: (p := c.get(f"/v1/predictions/{pid}").json())["status"] not in ("starting", "processing") and p,
        timeout=timeout,
    )


def _platform_lines(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if line.startswith(BOOT_PHASES)]


def test_a_failed_setup_gives_the_models_traceback_once_and_no_platform_noise(stack, model_copy):
    folder = model_copy("setup_fails")
    (folder / "nonce.txt").write_text(uuid.uuid4().hex)  # a version of its own: it boots cold
    stack.cli("push", str(folder), "local/setup-fails-logs")
    with stack.client() as c:
        pid = c.post("/v1/models/local/setup-fails-logs/predictions", json={"input": {"text": "a"}}).json()["id"]
        failed = _done(c, pid)
    assert failed["status"] == "failed"
    assert failed["error"] == "Model setup failed: RuntimeError: the weights are missing on purpose"
    logs = stack.as_in_container(failed["logs"])  # the simulation's task folder stands in for `/`
    assert logs.count("Traceback (most recent call last):") == 1, logs
    assert logs.count("RuntimeError: the weights are missing on purpose") == 1, logs
    assert 'raise RuntimeError("the weights are missing on purpose")' in logs
    assert 'predict.py", line 6, in setup' in logs
    lines = [line for line in logs.splitlines() if line.strip()]
    assert len(lines) == len(set(lines)), f"a repeated line: {logs}"
    for text in (logs, failed["error"]):
        assert not UUID.search(text), text
        assert not any(word in text for word in NOISE), text
    model_lines = [line for line in lines if line not in _platform_lines(logs)]
    assert model_lines[0] == "Traceback (most recent call last):", logs


@pytest.mark.slow  # builds an environment of its own
def test_the_environment_build_goes_to_the_versions_build_log_not_the_predictions_logs(stack, model_copy):
    folder = model_copy("sleeper")
    nonce = uuid.uuid4().int % 10**9
    (folder / "cog.yaml").write_text(
        'build:\n  python_version: "3.11"\n  python_packages:\n'
        f'    - "six!=0.0.{nonce}"\n'  # a requirement of its own: a new environment, built by the runner
        '    - "cog==0.22.0"\n'  # a pin the platform replaces, with a warning for the build log
        'predict: "predict.py:Predictor"\n'
    )
    version = stack.cli("push", "--public", str(folder), "local/sleeper-build-log").stdout.strip()
    with stack.client() as c:
        before = c.get(f"/v1/models/local/sleeper-build-log/versions/{version}").json()["build"]
        assert before["status"] in ("pending", "building"), before
        cold = _done(c, c.post("/v1/predictions", json={"version": version, "input": {"seconds": 0.1}}).json()["id"])
        warm = _done(c, c.post("/v1/predictions", json={"version": version, "input": {"seconds": 0.1}}).json()["id"])
        build = c.get(f"/v1/models/local/sleeper-build-log/versions/{version}").json()["build"]
        page = stack.anon().get("/local/sleeper-build-log").text
    assert cold["status"] == "succeeded" and warm["status"] == "succeeded"
    # the cold prediction: the model's line, one short line per boot phase, nothing of the build
    platform = _platform_lines(cold["logs"])
    assert [line for line in cold["logs"].splitlines() if line not in platform] == ["tick 0"], cold["logs"]
    assert any(line.startswith("Building the model's environment") for line in platform), cold["logs"]
    assert len(platform) == len({p.split(" ")[0] for p in platform}) <= 5, platform
    assert all(len(line) <= 120 for line in platform), platform
    assert not any(word in cold["logs"] for word in NOISE), cold["logs"]
    # a warm prediction's logs are the model's output, nothing else
    assert warm["logs"] == "tick 0\n"
    # the build: its own log on the version
    assert build["status"] == "succeeded" and re.fullmatch(r"[0-9a-f]{12}", build["environment"]), build
    assert "ignoring 'cog==0.22.0'" in build["logs"] and INSTALLED.search(build["logs"]), build["logs"]
    assert f"six!=0.0.{nonce}" in build["logs"]
    assert "Environment build" in page and INSTALLED.search(page)
