"""Operations on the deployed shape, simulated (`make sim-aws`): the start deadline with no GPU
capacity (SIMAWS_CAPACITY=gpu-a10g=0, as an account without G-instance vCPU quota)."""

from __future__ import annotations

import pytest

from tests.system.conftest import REPO, SimStack, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow]

DEADLINE_S = 20


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    assert (REPO / "cdk.out" / "manifest.json").is_file(), "run `make synth` first (make test does)"
    home = tmp_path_factory.mktemp("sim-ops") / "home"
    s = SimStack(
        home,
        env={
            "COGPLANE_USER": "admin",
            "SIMAWS_CAPACITY": "gpu-a10g=0",
            "COGPLANE_START_DEADLINE_SECONDS": str(DEADLINE_S),
        },
    ).start()
    try:
        tokens = REPO / "tests" / "fixtures" / "system_models" / "tokens"
        s.cli("push", str(tokens), "admin/tokens-a10g", "--hardware", "gpu-a10g")
        yield s
    finally:
        left = s.stop()
        assert not left, f"processes left behind after Ctrl-C: {left}"


def _finished(client, prediction_id: str):
    body = client.get(f"/v1/predictions/{prediction_id}").json()
    return body if body["status"] in ("succeeded", "failed", "canceled", "aborted") else None


def test_a_prediction_with_no_capacity_fails_at_its_start_deadline_with_ecs_reason(sim):
    """Before: it stayed `starting` forever. The expirer (every minute) fails it once its start
    deadline passed, with what ECS says: the task is still PENDING, no capacity for the SKU."""
    with sim.client() as api:
        created = api.post("/v1/models/admin/tokens-a10g/predictions", json={"input": {}})
        assert created.status_code == 201, created.text
        done = wait_for(lambda: _finished(api, created.json()["id"]), timeout=240, interval=1)
    assert done["status"] == "failed", done
    error = done["error"]
    assert error.startswith(f"The prediction did not start within {DEADLINE_S} s: its runner task "), error
    assert "is still PENDING: no capacity came for hardware gpu-a10g (capacity provider " in error, error
