"""The runner's parts depend one way (gpu_runner/runner.py's docstring draws it): each module
imports only the parts below it, so each can be tested alone against a fake cog."""

from __future__ import annotations

import ast
from pathlib import Path

GPU_RUNNER = Path(__file__).resolve().parents[2] / "gpu_runner"

# module -> the gpu_runner modules it may import
ALLOWED = {
    "cog_client": set(),
    "cog_server": {"cog_client"},
    "external_server": {"cog_client"},
    "loopback": {"cog_client"},
    "inputs": set(),
    "recorder": {"cog_client"},
    "presence": set(),
    "boot": {"cog_client", "cog_server", "external_server", "environment", "ecs_metadata"},
}


def _imports(module: str) -> set[str]:
    tree = ast.parse((GPU_RUNNER / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name.split(".")[1] for name in names if name.startswith("gpu_runner.")}
    return found


def test_each_part_imports_only_the_parts_below_it():
    wrong = {m: sorted(_imports(m) - allowed) for m, allowed in ALLOWED.items() if _imports(m) - allowed}
    assert not wrong, wrong


def test_the_loop_is_the_only_module_that_knows_every_part():
    assert {"boot", "recorder", "loopback", "inputs", "presence", "cog_client"} <= _imports("runner")
    assert not any("runner" in _imports(m) for m in ALLOWED)
