"""Cog behaviours real models rely on, through `cogplane push` and the API of a real `cogplane up`:
`@concurrent(max=4)`, cog.yaml `environment:`, a list of files in the model's order, and
`build.system_packages` checked at push."""

from __future__ import annotations

import shutil
import uuid

import pytest

from cogplane.domain.timefmt import parse
from tests.system.conftest import REPO, wait_for

pytestmark = pytest.mark.slow
RUNNER_MODELS = REPO / "tests" / "fixtures" / "runner_models"


def _copy(tmp_path, name: str):
    folder = tmp_path / name
    shutil.copytree(RUNNER_MODELS / name, folder)
    (folder / "nonce.txt").write_text(uuid.uuid4().hex)  # a version (and pool) of its own
    return folder


def _finish(client, ids: list[str], timeout: float = 180) -> list[dict]:
    def done():
        found = [client.get(f"/v1/predictions/{pid}").json() for pid in ids]
        return found if all(p["status"] not in ("starting", "processing") for p in found) else None

    return wait_for(done, timeout=timeout)


def test_concurrent_decorator_four_predictions_overlap_on_one_runner(one_runner_stack, tmp_path):
    stack = one_runner_stack
    stack.cli("push", str(_copy(tmp_path, "concurrency")), "local/hello-concurrency")
    with stack.client() as c:
        ids = [
            c.post("/v1/models/local/hello-concurrency/predictions", json={"input": {"seconds": 3}}).json()["id"]
            for _ in range(4)
        ]
        done = _finish(c, ids)
    assert [p["status"] for p in done] == ["succeeded"] * 4, [p.get("error") for p in done]
    runners = {stack.prediction_record(p["id"])["runner_id"] for p in done}
    assert len(runners) == 1, "one runner (one cog server) ran all four"
    starts, ends = [parse(p["started_at"]) for p in done], [parse(p["completed_at"]) for p in done]
    assert max(starts) < min(ends), list(zip(starts, ends, strict=True))
    model = [tuple(float(x) for x in p["output"].split()) for p in done]  # the model's own clock
    assert max(s for s, _ in model) < min(e for _, e in model), model


def test_environment_is_applied_and_its_names_shown(stack, tmp_path):
    pushed = stack.cli("push", str(_copy(tmp_path, "envvars")), "local/env-vars")
    version_id = pushed.stdout.strip()
    with stack.client() as c:
        version = c.get(f"/v1/models/local/env-vars/versions/{version_id}").json()
        assert version["environment"] == ["NAME", "TEST_VAR"]
        ids = [
            c.post("/v1/models/local/env-vars/predictions", json={"input": {"name": n}}).json()["id"]
            for n in ("TEST_VAR", "NAME")
        ]
        done = _finish(c, ids)
    assert [p["output"] for p in done] == ["ENV[TEST_VAR]=test_value", "ENV[NAME]=michael"]


def test_a_list_of_files_comes_back_in_order_through_the_client(stack, tmp_path):
    stack.cli("push", str(_copy(tmp_path, "filelist")), "local/filelist")
    client = stack.replicate()
    for attempt in range(2):
        out = client.run("local/filelist", input={"tag": f"a{attempt}"})
        # FileOutputs over HTTPS; URL strings on the plain-HTTP simulation (the client wraps https: only)
        with stack.anon() as anon:
            data = [f.read() if hasattr(f, "read") else anon.get(f).content for f in out]
        heads = [d.split(b"\n", 1)[0].decode() for d in data]
        assert heads == [f"{n} a{attempt}" for n in ("foo", "bar", "baz", "qux")]


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-like host")
def test_system_packages_this_host_lacks_are_refused_at_push(stack, tmp_path):
    """On one machine the host's packages count (dpkg); on the deployed shape the runner image's
    (RUNNER_IMAGE_PACKAGES), which has ffmpeg."""
    folder = _copy(tmp_path, "envvars")
    config = (folder / "cog.yaml").read_text()
    present = "dpkg" if stack.shape == "local" else "ffmpeg"
    (folder / "cog.yaml").write_text(
        config.replace("build:\n", f"build:\n  system_packages:\n    - {present}\n    - cogplane-no-such-package\n")
    )
    refused = stack.cli("push", str(folder), "local/needs-packages", check=False)
    assert refused.returncode == 1
    if stack.shape == "local":
        assert "cogplane-no-such-package is not installed on this machine" in refused.stderr
        assert "sudo apt-get install cogplane-no-such-package" in refused.stderr
    else:
        assert "cogplane-no-such-package is not installed in the runner image" in refused.stderr
        assert "Add it to gpu_runner/Dockerfile and RUNNER_IMAGE_PACKAGES" in refused.stderr
    (folder / "cog.yaml").write_text(config.replace("build:\n", f"build:\n  system_packages:\n    - {present}\n"))
    stack.cli("push", str(folder), "local/needs-packages")  # installed here: accepted
    bad_env = config.replace("  - NAME=michael\n", "  - PATH=/tmp/evil\n")
    (folder / "cog.yaml").write_text(bad_env)
    refused = stack.cli("push", str(folder), "local/needs-packages", check=False)
    assert refused.returncode == 1 and "PATH" in refused.stderr and "reserved" in refused.stderr
