"""Operations on the deployed shape, simulated (`make sim-aws`): the start deadline with no GPU
capacity (SIMAWS_CAPACITY=gpu-a10g=0, as an account without G-instance vCPU quota), and one
environment build per GPU instance (no SIMAWS_ENV_CACHE: environments live on the GPU task
definitions' host volume, a folder under $COGPLANE_HOME/sim/ecs/volumes/ kept across tasks)."""

from __future__ import annotations

import json
from pathlib import Path

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
            "SIMAWS_ENV_CACHE": "",  # no shared cache: the task definitions' volumes, as deployed
        },
        examples=tmp_path_factory.mktemp("no-examples"),
    ).start()
    try:
        models = REPO / "tests" / "fixtures" / "system_models"
        s.cli("push", str(models / "tokens"), "admin/tokens-a10g", "--hardware", "gpu-a10g")
        s.cli("push", str(models / "tabulator"), "admin/tabulator-t4", "--hardware", "gpu-t4")
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


BUILDING = "Building the model's environment"  # the prediction's line when its runner builds


def _tabulate_environments(sim) -> list[Path]:
    """Ready environments holding tabulate, wherever the simulation's tasks keep them."""
    found = []
    for metadata in (sim.home / "sim" / "ecs").rglob("cogplane-env.json"):
        env = metadata.parent
        if (env / ".ready").is_file() and "tabulate" in json.dumps(json.loads(metadata.read_text())):
            found.append(env)
    return found


def _runner_task(sim, runner_id: str) -> dict:
    """The ECS task (moto's record) whose runner is `runner_id`."""
    ecs = sim.aws("ecs")
    (cluster,) = ecs.list_clusters()["clusterArns"]
    arns = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
    arns += ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]
    for task in ecs.describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])["tasks"]:
        if {"key": "cogplane:runner", "value": runner_id} in task.get("tags", []):
            return task
    raise AssertionError(f"no task for runner {runner_id}")


def _predict(sim, api) -> tuple[dict, dict]:
    created = api.post("/v1/models/admin/tabulator-t4/predictions", json={"input": {"rows": "x,1;y,2"}})
    assert created.status_code == 201, created.text
    done = wait_for(lambda: _finished(api, created.json()["id"]), timeout=600, interval=1)
    assert done["status"] == "succeeded", done
    assert done["output"].startswith("tabulate 0.10.0\n"), done["output"]
    record = sim.prediction_record(done["id"])
    return done, _runner_task(sim, record["runner_id"])


def _assert_json_lines_name(task_log: Path, prediction_id: str) -> None:
    """The task definition's COGPLANE_LOG_FORMAT=json (what CloudWatch gets through awslogs): the
    runner's lines about the prediction are JSON objects carrying its id."""
    about = [line for line in task_log.read_text().splitlines() if prediction_id in line]
    assert about, f"no line about {prediction_id} in {task_log}"
    records = [json.loads(line) for line in about]
    assert all(r.get("prediction_id") == prediction_id and r["service"] == "runner" for r in records), about
    assert any(r["message"].startswith(f"prediction {prediction_id}: succeeded") for r in records), about


def test_a_gpu_instance_builds_a_version_environment_once(sim):
    """README: GPU tasks keep environments on their task definition's host volume, so a version's
    next cold boot on the instance reuses its environment. The first task builds it (on the
    volume); that task is stopped through ECS; the next prediction starts a new task, which finds
    the environment where the first left it. Without the volume (the environment in the first
    task's own filesystem) the second task builds again, and this test fails."""
    ecs = sim.aws("ecs")
    volumes = sim.home / "sim" / "ecs" / "volumes"
    with sim.client() as api:
        first, task = _predict(sim, api)
        assert BUILDING in (first["logs"] or ""), first["logs"]
        (env,) = _tabulate_environments(sim)
        assert env.is_relative_to(volumes), f"{env} is not on a host volume"
        before, used = env.stat(), (env / ".ready").stat().st_mtime_ns

        # scale to zero: the runner's task stops (as ECS stops it, or as it exits when idle)
        ecs.stop_task(cluster=task["clusterArn"], task=task["taskArn"], reason="test: scale to zero")
        # moto reports the task STOPPED at once; its runner exits after SIGTERM (the emulator's log)
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        wait_for(lambda: f"task {task_id} stopped (exit code" in sim.log(), timeout=120)

        _assert_json_lines_name(sim.home / "sim" / "ecs" / f"task-{task_id}.log", first["id"])

        second, task2 = _predict(sim, api)
    assert task2["taskArn"] != task["taskArn"]  # a new task: a cold boot
    assert BUILDING not in (second["logs"] or ""), second["logs"]
    assert _tabulate_environments(sim) == [env]
    after = env.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rebuilt
    assert (env / ".ready").stat().st_mtime_ns > used  # the second task used it (its last-use mark)
