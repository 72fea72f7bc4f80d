"""One configuration: every environment variable the platform, the runner and the functions read
is a field of a settings class (cogplane/settings.py, gpu_runner/settings.py), read once at an entry
point; and the hardware SKUs come from one list that the API and the CDK app both read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cogplane.domain import hardware
from cogplane.settings import ClientSettings, Settings
from gpu_runner.settings import RunnerSettings

REPO = Path(__file__).resolve().parents[2]
# The model's own process (it runs in the model's environment, not ours): it may read its env.
MAY_READ = {"gpu_runner/pdeathsig/sitecustomize.py"}
# Variables of the tools a child process runs, which it inherits: whether the environment already
# configures uv decides the flags it is given (cogplane/environments.py). Not settings of ours.
CHILD_TOOLS = ("UV_",)


def _names_child_tool(call: ast.Call) -> bool:
    first = call.args[0] if call.args else None
    return isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith(CHILD_TOOLS)


def _is_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def env_reads(source: str) -> list[int]:
    """Lines that read one variable: os.environ.get/[...]/`in`, os.getenv. Copying the whole
    environment for a child process (os.environ.items(), {**os.environ}) is not a read."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr == "get" and _is_environ(func.value) and not _names_child_tool(node):
                lines.append(node.lineno)
            elif func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os":
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            lines.append(node.lineno)
    return lines


def test_the_walk_finds_reads_and_lets_copies_pass():
    source = (
        "import os\n"
        "a = os.environ.get('X')\n"
        "b = os.environ['Y']\n"
        "c = 'Z' in os.environ\n"
        "d = os.getenv('W')\n"
        "env = {**os.environ, 'A': '1'}\n"
        "kept = {k: v for k, v in os.environ.items() if k != 'B'}\n"
        "uv = os.environ.get('UV_CACHE_DIR')\n"
    )
    assert env_reads(source) == [2, 3, 4, 5]


def test_nothing_reads_the_environment_outside_the_settings():
    found = []
    for package in ("cogplane", "functions", "gpu_runner", "local"):
        for path in sorted((REPO / package).rglob("*.py")):
            name = str(path.relative_to(REPO))
            if name in MAY_READ:
                continue
            found += [f"{name}:{line}" for line in env_reads(path.read_text())]
    assert found == []


def test_each_variable_is_read_once_into_one_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("COGPLANE_IDLE_TIMEOUT", "42")
    monkeypatch.setenv("COGPLANE_ENV_CACHE", str(tmp_path / "envs"))
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("AWS_LWA_PORT", "8124")
    monkeypatch.setenv("COG_URL", "http://127.0.0.1:5001")
    monkeypatch.setenv("COGPLANE_RUNNER_HTTP_PORT", "5099")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/x")
    monkeypatch.setenv("COGPLANE_URL", "https://api.example.test/")
    monkeypatch.setenv("COGPLANE_SESSION_KEY", "k" * 32)
    monkeypatch.setenv("COGPLANE_LOG_FORMAT", "json")
    runner = RunnerSettings()
    assert runner.log_format == "json"  # the runner task definitions' (cogplane.logs)
    assert runner.idle_timeout == 42 and runner.env_cache == tmp_path / "envs"  # the platform's fields
    assert (runner.cog_url, runner.runner_http_port) == ("http://127.0.0.1:5001", 5099)
    assert runner.ecs_metadata_uri == "http://169.254.170.2/v4/x"
    platform = Settings()
    assert (platform.port, platform.lwa_port, platform.session_key) == (8123, 8124, "k" * 32)
    assert ClientSettings().url == "https://api.example.test/"
    # a field given in code wins; defaults hold without the variables
    assert Settings(idle_timeout=5).idle_timeout == 5
    monkeypatch.delenv("COGPLANE_IDLE_TIMEOUT")
    assert Settings().idle_timeout == 300
    monkeypatch.delenv("COGPLANE_LOG_FORMAT")
    assert RunnerSettings().log_format == "text"  # `make up`: plain lines


def test_allow_networks_left_unset_is_told_apart_from_set_empty(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("COGPLANE_ALLOW_NETWORKS", raising=False)
    assert "allow_networks" not in Settings().model_fields_set  # `make up` then allows loopback
    monkeypatch.setenv("COGPLANE_ALLOW_NETWORKS", "")
    assert "allow_networks" in Settings().model_fields_set


def test_hardware_has_one_list_for_the_api_and_the_cdk_app():
    from cogplane.wiring import skus

    assert skus is hardware
    assert hardware.local() == {"cpu": "CPU"}
    assert set(hardware.deployed()) == {hardware.CPU, *hardware.gpu_instance_types()}
    constants = pytest.importorskip("infra.constants")  # the CDK app (needs aws-cdk-lib)
    assert constants.GPU_INSTANCE_TYPES == hardware.gpu_instance_types()
    assert constants.CPU_SKU == hardware.CPU


def test_api_workers_default_to_one_per_four_cores_between_one_and_eight(monkeypatch):
    from cogplane.settings import default_api_workers

    assert [default_api_workers(n) for n in (None, 1, 2, 4, 7, 8, 16, 32, 64, 128)] == [1, 1, 1, 1, 1, 2, 4, 8, 8, 8]
    monkeypatch.setenv("COGPLANE_API_WORKERS", "3")
    assert Settings().api_workers == 3
    monkeypatch.setenv("COGPLANE_API_WORKERS", "0")
    with pytest.raises(ValueError):
        Settings()
