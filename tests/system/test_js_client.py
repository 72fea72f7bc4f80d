"""The official JS client (npm replicate 1.4.0) against the stack, through node's test runner."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.system.conftest import REPO, node_env

pytestmark = pytest.mark.system


def test_js_client_runs_hello(stack):
    node = shutil.which("node")
    assert node, "node is required for the JS client tests"
    assert (REPO / "node_modules" / "replicate").is_dir(), "run `make install` (npm install) first"
    env = node_env(stack)
    result = subprocess.run(
        [node, "--test", str(REPO / "tests" / "js" / "hello.test.mjs")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 4" in result.stdout, result.stdout
