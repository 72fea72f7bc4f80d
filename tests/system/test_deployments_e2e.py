"""Deployments on the single-machine stack: min_instances keeps a READY runner before the first
prediction; a PATCH to a new version rolls runners over without failing in-flight work."""

from __future__ import annotations

import pytest

from cogplane.adapters.aws.ecs import started_by
from tests.system.conftest import wait_for

pytestmark = pytest.mark.system


def runners(stack, pool: str) -> list[dict]:
    return stack.runner_records(pool)


def warm_tasks(stack, pool: str) -> list[str]:
    """The deployed shape's warm runner tasks of the pool that ECS still runs."""
    ecs = stack.aws("ecs")
    (cluster,) = ecs.list_clusters()["clusterArns"]
    found = ecs.list_tasks(cluster=cluster, startedBy=started_by(pool, warm=True), desiredStatus="RUNNING")
    return found["taskArns"]


def test_min_instances_warm_runner_then_rollover_without_failing_in_flight(stack, model_copy):
    folder = model_copy("sleeper")
    v1 = stack.cli("push", str(folder), "local/dep-model").stdout.strip()
    with stack.client() as c:
        r = c.post(
            "/v1/deployments",
            json={
                "name": "dep",
                "model": "local/dep-model",
                "version": v1,
                "hardware": "cpu",
                "min_instances": 1,
                "max_instances": 1,
            },
        )
        assert r.status_code == 201, r.text
        pool_v1 = f"d-local.dep.{v1}"
        # READY before any prediction exists
        wait_for(lambda: any(x["state"] == "ready" for x in runners(stack, pool_v1)), timeout=120)
        first = c.post(
            "/v1/deployments/local/dep/predictions", json={"input": {"seconds": 0}}, headers={"Prefer": "wait=30"}
        ).json()
        assert first["status"] == "succeeded" and first["deployment"] == "local/dep"
        assert "boot_time" not in first["metrics"], "served warm: no cold boot"

        running = c.post("/v1/deployments/local/dep/predictions", json={"input": {"seconds": 3, "tag": "old"}}).json()
        wait_for(lambda: c.get(f"/v1/predictions/{running['id']}").json()["status"] == "processing", timeout=60)

        (folder / "README.md").write_text("version two\n")
        v2 = stack.cli("push", str(folder), "local/dep-model").stdout.strip()
        assert v2 != v1
        patched = c.patch("/v1/deployments/local/dep", json={"version": v2})
        assert patched.status_code == 200 and patched.json()["current_release"]["number"] == 2

        after = c.post(
            "/v1/deployments/local/dep/predictions",
            json={"input": {"seconds": 0, "tag": "new"}},
            headers={"Prefer": "wait=60"},
        ).json()
        assert after["version"] == v2
        done = wait_for(
            lambda: (p := c.get(f"/v1/predictions/{after['id']}").json())["status"] == "succeeded" and p, timeout=120
        )
        assert done["output"] == "slept 0 new"

        old = wait_for(
            lambda: (
                (p := c.get(f"/v1/predictions/{running['id']}").json())["status"] in ("succeeded", "failed", "canceled")
                and p
            ),
            timeout=60,
        )
        assert old["status"] == "succeeded" and old["output"] == "slept 3 old", "in-flight work was not failed"
        # the old release's warm runner retires; the new one is kept warm (deployed: by the
        # expirer, which runs every minute)
        settle = 60 if stack.shape == "local" else 150
        wait_for(lambda: not runners(stack, pool_v1), timeout=settle)
        wait_for(lambda: any(x["state"] == "ready" for x in runners(stack, f"d-local.dep.{v2}")), timeout=settle)

        assert c.delete("/v1/deployments/local/dep").status_code == 204
        if stack.shape == "local":
            wait_for(lambda: not runners(stack, f"d-local.dep.{v2}"), timeout=settle)
        else:  # the warm task stops; a task the API started cold for `after` idles out in its time
            wait_for(lambda: not warm_tasks(stack, f"d-local.dep.{v2}"), timeout=settle)
