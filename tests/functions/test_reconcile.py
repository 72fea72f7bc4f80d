"""The expirer's reconcile pass (deployed): deployments' min_instances kept warm through the
EcsDispatcher, and lost wakes (queued work, no runner) woken again — on moto's ECS, SQS, DynamoDB."""

from __future__ import annotations

from cogplane.adapters.aws.ecs import EcsDispatcher, started_by
from cogplane.clock import ManualClock
from cogplane.domain.entities import Deployment, Job, Model, Runner, Version
from cogplane.domain.pools import for_deployment as pool_for_deployment
from cogplane.services.expirer import Expirer
from cogplane.settings import Settings
from cogplane.wiring import build_aws, build_local
from tests.functions.conftest import CLUSTER

VERSION = "cd" * 32
NOW = "2026-03-01T12:00:00.000000Z"


def _services(aws, config, clock):
    services = build_aws(Settings(), clients=aws, clock=clock)
    services.dispatcher = EcsDispatcher.from_config(aws["ecs"], config, queue=services.queue)
    return services


def _running(aws, pool, warm=False):
    return aws["ecs"].list_tasks(cluster=CLUSTER, startedBy=started_by(pool, warm=warm), desiredStatus="RUNNING")[
        "taskArns"
    ]


def _deployment(name, min_instances, max_instances=2):
    return Deployment(
        owner="acme",
        name=name,
        model="acme/m",
        version=VERSION,
        hardware="cpu",
        min_instances=min_instances,
        max_instances=max_instances,
    )


def test_min_instances_are_kept_warm_and_cold_deployments_are_left_alone(aws, cluster):
    clock = ManualClock(NOW)
    services = _services(aws, cluster, clock)
    services.state.create_deployment(_deployment("warm", 2))
    services.state.create_deployment(_deployment("cold", 0))
    expirer = Expirer(services)

    counts = expirer.run_once()
    assert counts["warm_started"] == 2
    warm_pool = pool_for_deployment("acme", "warm", VERSION)
    assert len(_running(aws, warm_pool, warm=True)) == 2
    assert _running(aws, pool_for_deployment("acme", "cold", VERSION), warm=True) == []
    assert expirer.run_once()["warm_started"] == 0  # already warm: nothing more

    # one warm task dies: the next minute replaces it
    aws["ecs"].stop_task(cluster=CLUSTER, task=_running(aws, warm_pool, warm=True)[0], reason="crash")
    assert expirer.run_once()["warm_started"] == 1
    assert len(_running(aws, warm_pool, warm=True)) == 2


def test_a_lost_wake_is_woken_from_recently_stopped_tasks(aws, cluster):
    clock = ManualClock(NOW)
    services = _services(aws, cluster, clock)
    pool = "v-" + VERSION
    arn = services.dispatcher.ensure(pool)
    # the runner idled out just as a job arrived: its wake saw the task and started nothing
    services.queue.enqueue(Job(prediction_id="p1", pool=pool, enqueued_at=NOW))
    aws["ecs"].stop_task(cluster=CLUSTER, task=arn, reason="idle")
    assert _running(aws, pool) == []

    counts = Expirer(services).run_once()
    assert counts["woken"] == 1
    assert len(_running(aws, pool)) == 1
    assert services.dispatcher.recent_pools() == [pool]


def test_a_lost_runner_pool_with_work_gets_a_new_runner(aws, cluster):
    clock = ManualClock(NOW)
    services = _services(aws, cluster, clock)
    pool = "v-" + VERSION
    services.state.put_runner(Runner(id="r-gone", pool=pool, started_at=NOW, heartbeat_at=NOW))
    services.queue.enqueue(Job(prediction_id="p1", pool=pool, enqueued_at=NOW))
    clock.advance(120)
    counts = Expirer(services).run_once()
    assert services.state.get_runner("r-gone") is None
    assert counts["woken"] == 1 and len(_running(aws, pool)) == 1
    # the new task has no runner record yet and the pool no stopped task: not checked again
    assert Expirer(services).run_once()["woken"] == 0
    assert len(_running(aws, pool)) == 1


def test_reconcile_is_a_no_op_without_keep_warm(tmp_path):
    settings = Settings(home=tmp_path / "home", public_url="https://cogplane.test")
    woken: list[str] = []

    class PlainDispatcher:
        def wake(self, pool: str) -> None:
            woken.append(pool)

    services = build_local(settings, clock=ManualClock(NOW), dispatcher=PlainDispatcher())
    services.state.create_model(Model(owner="acme", name="m", created_at=NOW))
    services.state.put_version(Version(id=VERSION, owner="acme", name="m", created_at=NOW, openapi_schema={}))
    services.state.create_deployment(_deployment("warm", 1))
    services.queue.enqueue(Job(prediction_id="p1", pool="v-" + VERSION, enqueued_at=NOW))
    services.state.put_runner(Runner(id="r-1", pool="v-" + VERSION, started_at=NOW, heartbeat_at=NOW))
    counts = Expirer(services).run_once()
    assert "warm_started" not in counts and woken == []


def test_warm_runners_of_an_old_release_or_a_deleted_deployment_are_stopped(aws, cluster):
    """Warm runners never idle out: a PATCH to another version, a lower min_instances or a DELETE
    must stop the ones no deployment wants any more (else they run, and are paid for, for ever)."""
    clock = ManualClock(NOW)
    services = _services(aws, cluster, clock)
    services.state.create_deployment(_deployment("dep", 2))
    expirer = Expirer(services)
    assert expirer.run_once()["warm_started"] == 2
    old_pool = pool_for_deployment("acme", "dep", VERSION)
    services.state.put_runner(Runner(id="r-old", pool=old_pool, started_at=NOW, heartbeat_at=NOW))

    # min_instances lowered to 1: one of the two stops
    deployment = services.state.get_deployment("acme", "dep")
    deployment.min_instances = 1
    services.state.update_deployment(deployment, expect_release=deployment.release_number)
    assert expirer.run_once()["warm_retired"] == 1
    assert len(_running(aws, old_pool, warm=True)) == 1

    # a new release on another version: the old pool's warm runner stops, the new pool gets one
    deployment = services.state.get_deployment("acme", "dep")
    deployment.version = "ef" * 32
    services.state.update_deployment(deployment, expect_release=deployment.release_number)
    counts = expirer.run_once()
    new_pool = pool_for_deployment("acme", "dep", "ef" * 32)
    assert counts["warm_retired"] == 1 and counts["warm_started"] == 1
    assert _running(aws, old_pool, warm=True) == [] and len(_running(aws, new_pool, warm=True)) == 1
    assert expirer.run_once()["warm_retired"] == 0  # nothing more to stop

    # the deployment deleted: its last warm runner stops too
    services.state.put_runner(Runner(id="r-new", pool=new_pool, started_at=NOW, heartbeat_at=NOW))
    services.state.delete_deployment("acme", "dep")
    assert expirer.run_once()["warm_retired"] == 1
    assert _running(aws, new_pool, warm=True) == []
