"""The ECS dispatcher against moto's ECS: task definition, capacity provider, overrides, tags, cap."""

from __future__ import annotations

import pytest

from cogplane.adapters.aws.ecs import POOL_TAG, EcsConfig, EcsDispatcher, StatePoolHardware, started_by
from cogplane.domain.entities import Deployment, Model, Version
from tests.functions.conftest import CLUSTER

POOL = "v-" + "ab" * 32


def _tasks(ecs):
    arns = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns, include=["TAGS"])["tasks"] if arns else []


class FakeQueue:
    def __init__(self, depth: int = 0):
        self.waiting = depth

    def depth(self, pool: str) -> int:
        return self.waiting


def test_started_by_fits_ecs_limit_and_is_stable_per_pool():
    long_pool = "d-" + "o" * 39 + "." + "n" * 100 + "." + "f" * 64
    assert len(started_by(long_pool)) <= 36
    assert started_by(long_pool) == started_by(long_pool)
    assert started_by(long_pool) != started_by(long_pool, warm=True)
    assert started_by("v-a") != started_by("v-b")


def test_gpu_pool_runs_its_task_definition_on_its_capacity_provider(aws, cluster):
    dispatcher = EcsDispatcher.from_config(
        aws["ecs"], cluster, hardware_for=lambda pool: "gpu-t4", now=lambda: 1700000000.5
    )
    dispatcher.wake(POOL)

    (task,) = _tasks(aws["ecs"])
    assert task["taskDefinitionArn"] == cluster.task_definitions["gpu-t4"]
    assert task["capacityProviderName"] == "cogplane-gpu-t4"
    assert task["startedBy"] == started_by(POOL)
    tags = {t["key"]: t["value"] for t in task["tags"]}
    assert tags[POOL_TAG] == POOL
    assert tags["cogplane:keep-warm"] == "false"
    (override,) = task["overrides"]["containerOverrides"]
    assert override["name"] == "runner"
    command = override["command"]
    assert command[:5] == ["python", "-m", "gpu_runner", "--pool", POOL]
    assert command[command.index("--spawned-at") + 1] == "1700000000.5"
    runner_id = command[command.index("--runner-id") + 1]
    assert tags["cogplane:runner"] == runner_id
    assert {"name": "COGPLANE_RUNNER_ID", "value": runner_id} in override["environment"]


def test_cpu_pool_runs_on_fargate_with_public_ip_in_the_stack_subnets(aws, cluster):
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster)
    arn = dispatcher.ensure(POOL)

    (task,) = _tasks(aws["ecs"])
    assert task["taskArn"] == arn
    assert task["taskDefinitionArn"] == cluster.task_definitions["cpu"]
    assert task["launchType"] == "FARGATE"


def test_a_pool_with_a_runner_gets_no_second_one_without_a_backlog(aws, cluster):
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster, queue=FakeQueue(depth=1))
    dispatcher.wake(POOL)
    dispatcher.wake(POOL)
    assert len(_tasks(aws["ecs"])) == 1


def test_backlog_adds_runners_up_to_the_cap(aws, cluster):
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster, queue=FakeQueue(depth=50))
    for _ in range(5):
        dispatcher.wake(POOL)
    assert len(_tasks(aws["ecs"])) == cluster.max_per_pool == 2
    dispatcher.wake("v-other")  # the cap is per pool
    assert len(_tasks(aws["ecs"])) == 3


def test_stopped_runners_do_not_count(aws, cluster):
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster)
    arn = dispatcher.ensure(POOL)
    aws["ecs"].stop_task(cluster=CLUSTER, task=arn, reason="idle")
    assert dispatcher.count(POOL) == 0
    assert dispatcher.ensure(POOL) is not None  # scale from zero again


def test_keep_warm_starts_the_missing_warm_runners_once(aws, cluster):
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster, hardware_for=lambda pool: "gpu-t4")
    assert len(dispatcher.keep_warm(POOL, 2)) == 2
    assert dispatcher.keep_warm(POOL, 2) == []
    tasks = _tasks(aws["ecs"])
    assert all("--keep-warm" in t["overrides"]["containerOverrides"][0]["command"] for t in tasks)
    assert dispatcher.ensure(POOL) is None  # warm runners serve the pool: no cold boot


def test_wake_never_raises_on_unknown_hardware(aws, cluster):
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster, hardware_for=lambda pool: "gpu-h100")
    dispatcher.wake(POOL)
    assert _tasks(aws["ecs"]) == []


def test_config_round_trips_from_the_stack_json():
    text = (
        '{"cluster": "arn:c", "task_definitions": {"cpu": "arn:td"}, "capacity_providers": {},'
        ' "subnets": ["s-1"], "security_groups": ["sg-1"], "max_per_pool": 3}'
    )
    config = EcsConfig.from_json(text)
    assert config.cluster == "arn:c" and config.max_per_pool == 3 and config.subnets == ["s-1"]


def test_pool_hardware_comes_from_the_model_or_the_deployment(services):
    state = services.state
    state.create_model(Model(owner="acme", name="sd", hardware="gpu-a10g", created_at="t"))
    state.put_version(Version(id="ab" * 32, owner="acme", name="sd", created_at="t", openapi_schema={}))
    state.create_deployment(
        Deployment(
            owner="acme",
            name="fast",
            model="acme/sd",
            version="ab" * 32,
            hardware="gpu-l4",
            min_instances=0,
            max_instances=1,
        )
    )
    hardware = StatePoolHardware(state)
    assert hardware(POOL) == "gpu-a10g"
    assert hardware("d-acme.fast." + "ab" * 32) == "gpu-l4"
    assert hardware("v-unknown") == "cpu"


IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cogplane/acme/sd@sha256:" + "ab" * 32


@pytest.mark.parametrize("sku", ["gpu-t4", "cpu"])
def test_image_versions_get_a_two_container_task_definition_on_demand(aws, cluster, sku):
    from cogplane.adapters.aws.ecs import CREDENTIAL_VARIABLES, IMAGE_RUNNER_HTTP_PORT, MODEL_CONTAINER

    ecs = aws["ecs"]
    dispatcher = EcsDispatcher.from_config(
        ecs, cluster, hardware_for=lambda pool: sku, image_for=lambda pool: IMAGE if pool == POOL else None
    )
    dispatcher.wake(POOL)
    (task,) = _tasks(ecs)
    base_family = f"runner-{sku}"
    td = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    assert td["family"] == f"{base_family}-image-{'ab' * 6}"
    containers = {c["name"]: c for c in td["containerDefinitions"]}
    assert set(containers) == {"runner", MODEL_CONTAINER}
    model, runner = containers[MODEL_CONTAINER], containers["runner"]
    assert model["image"] == IMAGE and runner["image"] == "runner:latest"
    env = {e["name"]: e["value"] for e in runner["environment"]}
    assert env["COGPLANE_RUNNER_HTTP_PORT"] == str(IMAGE_RUNNER_HTTP_PORT)
    # ECS sets the task role's credentials URI in every container: the model's entry point removes
    # it (and its kin) before cog starts; the model container is given none of the runner's settings
    assert model["entryPoint"][0] == "/usr/bin/env"
    for name in CREDENTIAL_VARIABLES:
        assert ["-u", name] in [model["entryPoint"][i : i + 2] for i in range(1, len(model["entryPoint"]), 2)]
    assert model["environment"] == [{"name": "PORT", "value": "5000"}]
    assert not model.get("linuxParameters") and not model.get("mountPoints")  # no NET_ADMIN, no cache volume
    assert not runner.get("portMappings") and not model.get("portMappings")  # nothing published on the host
    if sku == "gpu-t4":
        # bridge, like the runner's own definition: no host network (the instance's metadata
        # service and role, fixed ports); the runner reaches cog through its link to `model`
        assert td["networkMode"] == "bridge"
        assert runner["links"] == [MODEL_CONTAINER]
        assert env["COG_URL"] == "http://model:5000"
        assert model["command"] == ["python", "-m", "cog.server.http", "--host", "0.0.0.0"]  # no --upload-url
        assert model["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
        assert not runner.get("resourceRequirements")
        assert task["capacityProviderName"] == "cogplane-gpu-t4"
    else:
        assert td["networkMode"] == "awsvpc" and task["launchType"] == "FARGATE"
        assert not runner.get("links")
        assert env["COG_URL"] == "http://127.0.0.1:5000"  # one shared namespace
        assert model["command"] == ["python", "-m", "cog.server.http", "--host", "127.0.0.1"]
    # the override still targets the runner container
    assert task["overrides"]["containerOverrides"][0]["name"] == "runner"

    # cached: no second registration, in this dispatcher or a fresh one (found by family)
    registered = []
    fresh = EcsDispatcher.from_config(
        ecs, cluster, hardware_for=lambda pool: sku, image_for=lambda pool: IMAGE, queue=FakeQueue(depth=5)
    )
    real_register = ecs.register_task_definition
    ecs.register_task_definition = lambda **kw: registered.append(kw) or real_register(**kw)
    try:
        assert fresh.image_task_definition(IMAGE, sku) == task["taskDefinitionArn"]
        fresh.wake(POOL)
        dispatcher.image_task_definition(IMAGE, sku)
    finally:
        ecs.register_task_definition = real_register
    assert registered == []
    # a source version of another pool still runs the plain runner definition
    dispatcher.wake("v-other")
    other = [t for t in _tasks(ecs) if t["startedBy"] == started_by("v-other")]
    assert other[0]["taskDefinitionArn"] == cluster.task_definitions[sku]


def test_an_image_definition_from_before_with_host_networking_gets_a_new_revision(aws, cluster):
    """A deployment that registered host-networking image definitions: the family is found by
    name, but the dispatcher registers a bridge revision instead of running the old one."""
    from cogplane.adapters.aws.ecs import image_task_kwargs

    ecs = aws["ecs"]
    base = ecs.describe_task_definition(taskDefinition=cluster.task_definitions["gpu-t4"])["taskDefinition"]
    family = f"runner-gpu-t4-image-{'ab' * 6}"
    old = image_task_kwargs(base, family, IMAGE)
    old["networkMode"] = "host"
    for container in old["containerDefinitions"]:
        container.pop("links", None)
        container.pop("entryPoint", None)
    old_arn = ecs.register_task_definition(**old)["taskDefinition"]["taskDefinitionArn"]
    dispatcher = EcsDispatcher.from_config(ecs, cluster, hardware_for=lambda pool: "gpu-t4", image_for=lambda p: IMAGE)
    arn = dispatcher.image_task_definition(IMAGE, "gpu-t4")
    assert arn != old_arn
    assert ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["networkMode"] == "bridge"


def test_pool_image_is_that_of_image_versions_only(services):
    state = services.state
    state.create_model(Model(owner="acme", name="sd", hardware="gpu-a10g", created_at="t"))
    state.put_version(
        Version(id="ab" * 32, owner="acme", name="sd", created_at="t", openapi_schema={}, kind="image", image=IMAGE)
    )
    state.put_version(Version(id="cd" * 32, owner="acme", name="sd", created_at="t", openapi_schema={}))
    pools = StatePoolHardware(state)
    assert pools.image(POOL) == IMAGE
    assert pools.image("d-acme.fast." + "ab" * 32) == IMAGE
    assert pools.image("v-" + "cd" * 32) is None
    assert pools.image("v-unknown") is None


def test_start_problem_names_what_ecs_says_about_the_pools_task(aws, cluster):
    """For a prediction that did not start in time: ECS's view of the pool's runner task."""
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster, hardware_for=lambda pool: "gpu-t4")
    assert "no runner task was started for its pool (hardware gpu-t4)" in dispatcher.start_problem(POOL)
    arn = dispatcher.ensure(POOL)
    task_id = arn.rsplit("/", 1)[-1]
    aws["ecs"].stop_task(cluster=CLUSTER, task=arn, reason="Timeout waiting for network interface provisioning")
    problem = dispatcher.start_problem(POOL)
    assert problem == f"its runner task {task_id} stopped: Timeout waiting for network interface provisioning"


def _counting(calls):
    """Counts the dispatcher's ListTasks (by pool), not the test's own."""

    def handler(params, **_):
        if "startedBy" in params:
            calls.append(params["startedBy"])

    return handler


def test_a_served_pool_is_checked_once_per_moment_not_per_create(aws, cluster):
    """Every create wakes its pool inside the request: a warm pool's burst must not pay ECS's and
    SQS's round trips (two ListTasks, a GetQueueAttributes) per request."""
    calls = []
    aws["ecs"].meta.events.register("provide-client-params.ecs.ListTasks", _counting(calls))
    clock = [100.0]
    queue = FakeQueue(depth=1)
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster, queue=queue, monotonic=lambda: clock[0])
    dispatcher.wake(POOL)  # a cold boot: the next wake looks again
    assert len(_tasks(aws["ecs"])) == 1 and len(calls) == 2
    dispatcher.wake(POOL)  # a runner and no backlog beyond it: served
    assert len(calls) == 4
    for _ in range(20):
        dispatcher.wake(POOL)
    assert len(calls) == 4
    clock[0] += 5.1  # then it looks again, and a backlog that grew meanwhile adds a runner
    queue.waiting = 10
    dispatcher.wake(POOL)
    assert len(calls) == 6 and len(_tasks(aws["ecs"])) == 2
    dispatcher.wake("v-other")  # trust is per pool
    assert len(calls) == 8


def test_a_pool_without_runners_is_checked_at_every_wake(aws, cluster):
    calls = []
    aws["ecs"].meta.events.register("provide-client-params.ecs.ListTasks", _counting(calls))
    dispatcher = EcsDispatcher.from_config(aws["ecs"], cluster, hardware_for=lambda pool: "gpu-h100")
    for _ in range(3):
        dispatcher.wake(POOL)  # no task definition for the hardware: nothing starts, nothing is trusted
    assert len(calls) == 6 and _tasks(aws["ecs"]) == []
