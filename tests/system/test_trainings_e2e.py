"""Trainings through the running stack (either shape: `--shape sim-aws` too) with the official
clients and the real cog server: examples/hello-train, pushed unchanged with the CLI, is trained,
and its trained version runs."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from replicate.exceptions import ReplicateError

from tests.system.conftest import REPO, node_env, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow]

TERMINAL = ("succeeded", "failed", "canceled")


def _me(stack) -> str:
    """The token's account (`local` on the single machine, `admin` on sim-aws)."""
    with stack.client() as c:
        return c.get("/v1/account").json()["username"]


def _base(stack) -> str:
    return f"{_me(stack)}/hello-train"


def _base_version(stack) -> str:
    """examples/hello-train as pushed by the CLI (same bundle, same id on every push)."""
    out = stack.cli("push", str(REPO / "examples" / "hello-train"), _base(stack)).stdout
    return out.strip().rsplit(":", 1)[-1]


def _destination(stack, name: str) -> str:
    with stack.client() as c:
        owner = c.get("/v1/account").json()["username"]
        r = c.post("/v1/models", json={"owner": owner, "name": name})
        assert r.status_code in (201, 409), r.text
    return f"{owner}/{name}"


def _poll(training, timeout: float = 300):
    """replicate 1.0.7's Training has no wait(): reload() until it is terminal."""
    deadline = time.monotonic() + timeout
    while training.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        training.reload()
    return training


def test_train_then_run_the_trained_version_with_the_python_client(stack, receiver):
    client = stack.replicate()
    base = _base_version(stack)
    destination = _destination(stack, "greeter-py")
    training = client.trainings.create(
        version=f"{_base(stack)}:{base}", input={"prefix": "howdy"}, destination=destination, webhook=receiver.url
    )
    assert training.status == "starting" and training.destination == destination
    training = _poll(training)
    assert training.status == "succeeded", (training.error, training.logs)
    assert "training step 3/3" in training.logs
    new_version = training.output["version"]
    assert new_version.startswith(f"{destination}:") and training.destination == destination
    assert training.output["weights"].startswith("http")  # our signed URL; S3's presigned one on sim-aws

    # the destination's new version runs the base code with the trained weights (COG_WEIGHTS)
    assert client.run(new_version, input={"text": "world"}) == "howdy world"
    assert client.run(f"{_base(stack)}:{base}", input={"text": "world"}) == "hello world"
    with stack.client() as c:
        version = c.get(f"/v1/models/{destination}/versions/{new_version.split(':')[1]}").json()
        assert "TrainingInput" not in version["openapi_schema"]["components"]["schemas"]
        listed = c.get("/v1/trainings").json()["results"]
        assert training.id in [t["id"] for t in listed]
        assert training.id not in [p["id"] for p in c.get("/v1/predictions").json()["results"]]
        final = c.get(f"/v1/trainings/{training.id}").json()
        # the weights URL is signed and serves the trained file
        assert c.get(final["output"]["weights"]).text == "howdy"

    # a webhook receives the terminal training, exactly as GET shows it
    wait_for(lambda: any(r["json"]["status"] == "succeeded" for r in receiver.requests), timeout=60)
    last = receiver.requests[-1]["json"]
    assert last["status"] == "succeeded" and last["id"] == training.id
    assert last["output"]["version"] == new_version and last["destination"] == destination
    assert last["urls"]["get"].endswith(f"/v1/trainings/{training.id}")


def test_cancel_a_running_training(stack):
    client = stack.replicate()
    destination = _destination(stack, "greeter-cancel")
    training = client.trainings.create(
        version=f"{_base(stack)}:{_base_version(stack)}",
        input={"prefix": "never", "steps": 60, "sleep": 1},
        destination=destination,
    )
    deadline = time.monotonic() + 180
    while "training step" not in (training.logs or "") and time.monotonic() < deadline:
        time.sleep(0.3)
        training.reload()
    assert training.status == "processing", (training.status, training.error)
    training.cancel()
    training = _poll(training, timeout=60)
    assert training.status == "canceled"
    with stack.client() as c:
        assert c.get(f"/v1/models/{destination}").json()["latest_version"] is None  # nothing trained


def test_bad_training_input_is_422(stack):
    client = stack.replicate()
    destination = _destination(stack, "greeter-bad")
    with pytest.raises(ReplicateError) as err:
        client.trainings.create(
            version=f"{_base(stack)}:{_base_version(stack)}", input={"prefix": "x", "steps": 0}, destination=destination
        )
    assert err.value.status == 422
    with pytest.raises(ReplicateError) as err:
        client.trainings.create(
            version=f"{_base(stack)}:{_base_version(stack)}", input={"prefix": "x"}, destination="local/does-not-exist"
        )
    assert err.value.status == 422


def test_js_client_creates_and_polls_a_training(stack):
    node = shutil.which("node")
    assert node, "node is required for the JS client tests"
    env = node_env(
        stack,
        COGPLANE_BASE_MODEL=_base(stack),
        COGPLANE_BASE_VERSION=_base_version(stack),
        COGPLANE_DESTINATION=_destination(stack, "greeter-js"),
    )
    result = subprocess.run(
        [node, "--test", str(REPO / "tests" / "js" / "trainings.test.mjs")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 1" in result.stdout, result.stdout
