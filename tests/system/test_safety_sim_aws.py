"""The safety checker on the deployed shape, simulated (`make sim-aws`): nobody pushes
`cogplane/safety-checker`; the expirer function installs it from its Lambda asset on its first
run, and wakes its pool when a runner (ECS task, no dispatcher) queues a check. A model set to
`all` gets its flagged image replaced, as on `make up` (tests/system/test_safety_e2e.py).

Slow by nature: the expirer runs every minute (its first run 1 min after the start), so a check
waits up to a minute for its pool's wake, then for the checker's cold start."""

from __future__ import annotations

import time

import pytest

from tests.system.conftest import REPO, SimStack, fetch, is_black, png_pixels

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.own_shape]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    assert (REPO / "cdk.out" / "manifest.json").is_file(), "run `make synth` first (make test does)"
    root = tmp_path_factory.mktemp("safety-sim")
    (root / "no-examples").mkdir()
    s = SimStack(root / "home", examples=root / "no-examples").start()
    try:
        yield s
    finally:
        assert not s.stop(), "processes left behind"


def test_a_flagged_image_is_replaced_on_the_deployed_shape(sim):
    folder = REPO / "tests" / "fixtures" / "system_models" / "painter"
    with sim.client() as c:  # the admin-token account (COGPLANE_USER names it)
        owner = c.get("/v1/account").json()["username"]
    painter = sim.cli("push", str(folder), f"{owner}/painter").stdout.strip()
    assert (
        sim.cli("models", "set", f"{owner}/painter", "--safety-checker", "all").stdout.strip()
        == f"{owner}/painter: safety checker all"
    )
    client = sim.replicate()
    start, attempts = time.monotonic(), 0
    deadline = start + 600
    while True:  # the expirer installs the checker on its first run, a minute after the start
        prediction = client.predictions.create(version=painter, input={"text": "sim"})
        prediction.wait()
        attempts += 1
        if "is not installed" not in (prediction.error or "") or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert prediction.status == "succeeded", (prediction.error, prediction.logs)
    with sim.client() as c:
        raw = c.get(f"/v1/predictions/{prediction.id}").json()
    assert raw["safety"] == {"checked": True, "flagged": [1]}, raw
    assert raw["metrics"]["safety_time"] > 0
    print(f"checked after {attempts} attempt(s), {time.monotonic() - start:.1f} s; metrics {raw['metrics']}")
    assert "Safety checker: output 1 (output_1.png) was flagged" in raw["logs"]
    plain, flagged = (fetch(sim, url) for url in raw["output"])
    assert png_pixels(flagged)[:2] == (256, 256) and is_black(flagged)
    assert png_pixels(plain)[:2] == (320, 240) and not is_black(plain)
    # the checker is the platform's, private: the install's admin does not see it
    with sim.client() as c:
        assert c.get("/v1/models/cogplane/safety-checker").status_code == 404
