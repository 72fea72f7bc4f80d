"""Deployment pools: naming, the local dispatcher's warm pools (min_instances), and how a
runner finds the version of a deployment pool."""

from __future__ import annotations

import pytest

from cogplane.adapters.local.dispatcher import ProcessDispatcher
from cogplane.adapters.local.sqlite import Database
from cogplane.domain import pools
from cogplane.domain.entities import Deployment, Model, Version
from cogplane.services.deployments import deployment_pool
from gpu_runner.runner import RunnerConfig, RunnerProcess


def vid(n: int) -> str:
    return f"{n:064x}"


def deployment(name: str, *, version: str, min_instances: int, owner: str = "alice", release: int = 1) -> Deployment:
    return Deployment(
        owner=owner,
        name=name,
        model="alice/hello",
        version=version,
        hardware="cpu",
        min_instances=min_instances,
        max_instances=5,
        release_number=release,
        release_created_at="2026-01-01T00:00:00.000000Z",
        created_by=owner,
    )


@pytest.fixture
def dispatcher(services, settings, tmp_path):
    return ProcessDispatcher(Database(str(settings.db_path)), services, log_dir=tmp_path / "logs")


def test_pool_names_split_back_from_the_right():
    pool = pools.for_deployment("my-org_x", "model.v1.2", vid(7))
    assert pool == f"d-my-org_x.model.v1.2.{vid(7)}"
    assert pools.parse_deployment(pool) == ("my-org_x", "model.v1.2", vid(7))
    assert pools.parse_deployment(f"v-{vid(7)}") is None
    assert pools.parse_deployment("d-nodots") is None


def test_every_kind_of_pool_is_built_and_read_in_one_place():
    assert pools.for_version(vid(1)) == f"v-{vid(1)}"
    assert pools.for_training(vid(1)) == f"t-{vid(1)}"
    assert pools.parse(pools.for_version(vid(1))) == pools.Pool("version", vid(1))
    training = pools.parse(pools.for_training(vid(2)))
    assert training == pools.Pool("training", vid(2)) and training.training
    deployed = pools.parse(pools.for_deployment("acme", "my.app", vid(3)))
    assert deployed == pools.Pool("deployment", vid(3), owner="acme", name="my.app")
    assert not deployed.training
    for malformed in ("v-", "t-", "d-", "d-nodots", "d-acme.", "x-abc", "", "vabc"):
        assert pools.parse(malformed) is None, malformed


def test_warm_pools_read_deployments_with_min_instances(services, dispatcher):
    assert dispatcher.warm_pools() == {}
    services.state.create_deployment(deployment("cold", version=vid(1), min_instances=0))
    warm = deployment("warm.one", version=vid(2), min_instances=2)
    services.state.create_deployment(warm)
    services.state.create_deployment(deployment("other", version=vid(3), min_instances=1, owner="bob"))
    assert dispatcher.warm_pools() == {
        deployment_pool(warm): 2,
        f"d-alice.warm.one.{vid(2)}": 2,
        f"d-bob.other.{vid(3)}": 1,
    }

    # a release to a new version moves the warm pool; the old pool is no longer kept warm
    services.state.update_deployment(warm.replace(version=vid(4), min_instances=1, release_number=2), expect_release=1)
    assert dispatcher.warm_pools() == {f"d-alice.warm.one.{vid(4)}": 1, f"d-bob.other.{vid(3)}": 1}
    services.state.delete_deployment("bob", "other")
    assert dispatcher.warm_pools() == {f"d-alice.warm.one.{vid(4)}": 1}


def _runner(services, tmp_path, pool: str) -> RunnerProcess:
    return RunnerProcess(services, RunnerConfig(pool=pool, work_root=tmp_path / "work", env_cache=tmp_path / "envs"))


def test_runner_resolves_the_version_named_by_a_deployment_pool(services, schema, tmp_path):
    services.state.create_model(Model(owner="alice", name="hello"))
    for n in (1, 2):
        services.state.put_version(
            Version(id=vid(n), owner="alice", name="hello", created_at=f"t{n}", openapi_schema=schema)
        )
    d = deployment("my.app", version=vid(2), min_instances=0)
    services.state.create_deployment(d)

    assert _runner(services, tmp_path, deployment_pool(d)).boot.resolve_version().id == vid(2)
    # the old pool of a deployment released to another version still drains with its own version
    old = _runner(services, tmp_path, pools.for_deployment("alice", "my.app", vid(1)))
    assert old.boot.resolve_version().id == vid(1)
    # ...and so does a pool whose deployment was deleted meanwhile
    services.state.delete_deployment("alice", "my.app")
    assert _runner(services, tmp_path, deployment_pool(d)).boot.resolve_version().id == vid(2)
    with pytest.raises(RuntimeError):
        _runner(services, tmp_path, pools.for_deployment("alice", "my.app", vid(9))).boot.resolve_version()
    with pytest.raises(RuntimeError):
        _runner(services, tmp_path, "d-nodots").boot.resolve_version()


class Alive:
    """A runner process that stays alive (the dispatcher only asks `poll()`)."""

    def poll(self) -> None:
        return None


def test_a_create_ticks_fully_for_a_pool_without_a_runner_and_looks_only_at_a_served_pool(
    services, dispatcher, monkeypatch
):
    """A create for a pool nobody serves makes the loop tick at once (a cold boot starts now); for
    a served pool it asks only for a look at that pool's backlog, at most every POKE_EVERY_S, and
    that look adds a runner once the backlog has been seen four times, as a full tick does."""
    from cogplane.adapters.local import dispatcher as module
    from cogplane.adapters.local.dispatcher import Child
    from cogplane.domain.entities import Job

    spawned: list[str] = []
    monkeypatch.setattr(dispatcher, "spawn", lambda pool, keep_warm=False: spawned.append(pool))
    dispatcher.wake("v-cold")
    assert dispatcher.tick_now and dispatcher.wakeup.is_set() and not dispatcher.poke

    dispatcher.tick_now = False
    dispatcher.wakeup.clear()
    dispatcher.children["r-1"] = Child(id="r-1", pool="v-hot", proc=Alive(), started=0.0)  # type: ignore[arg-type]
    dispatcher.wake("v-hot")
    assert dispatcher.poke == {"v-hot"} and not dispatcher.tick_now and dispatcher.wakeup.is_set()
    dispatcher.poke.clear()
    dispatcher.wake("v-hot")  # within POKE_EVERY_S of the last: no second look
    assert not dispatcher.poke

    monkeypatch.setattr(module, "POKE_EVERY_S", 0.0)
    for n in range(3):
        services.queue.enqueue(Job(prediction_id=f"p{n}", pool="v-hot", enqueued_at="t"))
    for _ in range(4):
        dispatcher.wake("v-hot")
        dispatcher.scale(dispatcher.poke.pop(), now=10.0)
    assert spawned == ["v-hot"]
