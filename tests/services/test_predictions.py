"""The prediction service alone: the real SQLite state store (a fake of it would be a stub of the
conditional write under test), in-memory fakes of the job queue, the dispatcher and the ids, a
manual clock. Create, cancel, a lost race (surfacing as Conflict) and moves refused out of a
terminal status — no API, no runner."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cogplane.adapters.local.sqlite import Database, SqliteStateStore
from cogplane.clock import ManualClock
from cogplane.domain import transitions
from cogplane.domain.entities import Account, Job, Model, Prediction, Version
from cogplane.domain.errors import Conflict, NotFound, Unavailable, Unprocessable
from cogplane.domain.status import TERMINAL, Status
from cogplane.services.predictions import PredictionService
from tests.conftest import HELLO_SCHEMA

T0 = "2026-03-01T12:00:00.000000Z"


class FakeQueue:
    """JobQueue in memory: what was enqueued, or a failure to enqueue."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.broken: Exception | None = None

    def enqueue(self, job: Job) -> None:
        if self.broken:
            raise self.broken
        self.jobs.append(job)


class FakeDispatcher:
    def __init__(self) -> None:
        self.woken: list[str] = []

    def wake(self, pool: str) -> None:
        self.woken.append(pool)


class CountingIds:
    def __init__(self) -> None:
        self.n = 0

    def prediction_id(self) -> str:
        self.n += 1
        return f"pred{self.n:04d}"


class RacingState:
    """The real store, with another writer that slips in just before the service's next
    conditional write (`before_update`), or a store that fails for another reason (`broken`)."""

    def __init__(self, store: SqliteStateStore) -> None:
        self.store = store
        self.before_update: list[Any] = []
        self.broken: Exception | None = None
        self.updates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def update_prediction(self, prediction_id: str, changes: dict[str, Any], **kw: Any) -> Prediction:
        self.updates += 1
        if self.broken:
            raise self.broken
        if self.before_update:
            self.before_update.pop(0)()
        return self.store.update_prediction(prediction_id, changes, **kw)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def state(tmp_path) -> RacingState:
    return RacingState(SqliteStateStore(Database(str(tmp_path / "state.db"))))


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def dispatcher() -> FakeDispatcher:
    return FakeDispatcher()


@pytest.fixture
def service(state, queue, dispatcher, clock) -> PredictionService:
    return PredictionService(state, queue, dispatcher, clock, CountingIds(), allow_networks=["127.0.0.0/8"])


@pytest.fixture
def alice(state) -> Account:
    account = Account(username="alice", created_at=T0)
    state.create_account(account)
    return account


@pytest.fixture
def made(state, alice) -> tuple[Model, Version]:
    model = Model(owner="alice", name="m", created_at=T0)
    state.create_model(model)
    version = Version(
        id="v" * 64, owner="alice", name="m", created_at=T0, openapi_schema=json.loads(json.dumps(HELLO_SCHEMA))
    )
    state.put_version(version)
    return model, version


def create(service, alice, made, body: dict[str, Any] | None = None, **kw: Any) -> Prediction:
    model, version = made
    return service.create(alice, model, version, body or {"input": {"prompt": "hi"}}, **kw)


# --- create -------------------------------------------------------------------------------
def test_create_stores_a_starting_prediction_queues_its_job_and_wakes_its_pool(
    service, state, queue, dispatcher, alice, made
):
    p = create(service, alice, made, cancel_after="30s")
    assert p.status is Status.STARTING
    assert p.input == {"prompt": "hi"}
    assert p.pool == "v-" + "v" * 64
    assert p.deadline == "2026-03-01T12:00:30.000000Z"
    assert p.remove_at == "2026-03-01T13:00:00.000000Z"  # API predictions keep their data an hour
    assert state.get_prediction(p.id) == p
    assert [(j.prediction_id, j.pool, j.enqueued_at) for j in queue.jobs] == [(p.id, p.pool, T0)]
    assert dispatcher.woken == [p.pool]


def test_bad_input_stores_and_queues_nothing(service, state, queue, alice, made):
    with pytest.raises(Unprocessable):
        create(service, alice, made, {"input": {"prompt": "hi", "steps": 99}})
    with pytest.raises(Unprocessable):
        create(service, alice, made, {"input": {"prompt": "hi"}, "webhook": "not a url"})
    assert queue.jobs == []
    assert state.list_predictions("alice").items == []


def test_a_prediction_that_cannot_be_queued_is_failed_not_left_starting(service, state, queue, alice, made):
    queue.broken = RuntimeError("queue down")
    with pytest.raises(RuntimeError):
        create(service, alice, made)
    [stored] = state.list_predictions("alice").items
    assert stored.status is Status.FAILED
    assert stored.error == "Could not queue the prediction: queue down"
    assert stored.completed_at == T0


def test_a_stopping_platform_refuses_creates(service, queue, alice, made):
    service.refusing = "cogplane is stopping"
    with pytest.raises(Unavailable):
        create(service, alice, made)
    assert queue.jobs == []


# --- cancel -------------------------------------------------------------------------------
def test_cancel_a_queued_prediction(service, state, alice, made, clock):
    p = create(service, alice, made)
    clock.advance(2)
    canceled = service.cancel(alice, p.id)
    assert canceled.status is Status.CANCELED
    assert canceled.completed_at == "2026-03-01T12:00:02.000000Z"
    assert canceled.metrics == {}  # it never ran
    assert state.get_prediction(p.id) == canceled


def test_cancel_a_running_prediction_records_its_run_time(service, state, alice, made, clock):
    p = create(service, alice, made)
    clock.advance(1)
    transitions.start(now=clock.now(), runner_id="r1").apply(state, p.id)
    clock.advance(2.5)
    canceled = service.cancel(alice, p.id)
    assert canceled.status is Status.CANCELED
    assert canceled.metrics == {"predict_time": 2.5, "total_time": 3.5}


def test_cancel_is_private_to_the_owner(service, state, alice, made):
    p = create(service, alice, made)
    bob = Account(username="bob", created_at=T0)
    state.create_account(bob)
    with pytest.raises(NotFound):
        service.cancel(bob, p.id)
    assert state.get_prediction(p.id).status is Status.STARTING


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_cancel_of_a_finished_prediction_returns_it_unchanged(service, state, alice, made, terminal):
    p = create(service, alice, made)
    state.store.update_prediction(p.id, {"status": terminal, "completed_at": T0})
    before = state.get_prediction(p.id)
    writes = state.updates
    assert service.cancel(alice, p.id) == before
    assert state.updates == writes  # not even tried: the domain refuses moves out of a terminal status
    with pytest.raises(Conflict):
        transitions.cancel(before, now=T0)


# --- lost races ---------------------------------------------------------------------------
def test_cancel_that_loses_a_race_to_the_runner_reads_again_and_cancels_the_running_prediction(
    service, state, alice, made, clock
):
    p = create(service, alice, made)
    clock.advance(1)
    # the service read `starting`; a runner takes it before the conditional write
    started = transitions.start(now=clock.now(), runner_id="r1")
    state.before_update.append(lambda: started.apply(state.store, p.id))
    clock.advance(1)
    canceled = service.cancel(alice, p.id)
    assert state.updates == 2  # the first write lost (Conflict), the second applied to `processing`
    assert canceled.status is Status.CANCELED
    assert canceled.runner_id == "r1"
    assert canceled.metrics == {"predict_time": 1.0, "total_time": 2.0}


def test_cancel_that_loses_a_race_to_the_end_returns_the_finished_prediction(service, state, alice, made, clock):
    p = create(service, alice, made)
    transitions.start(now=clock.now(), runner_id="r1").apply(state, p.id)
    finish = transitions.finish(Status.SUCCEEDED, {"output": "done", "completed_at": clock.now()})
    state.before_update.append(lambda: finish.apply(state.store, p.id))
    result = service.cancel(alice, p.id)
    assert result.status is Status.SUCCEEDED and result.output == "done"
    assert state.get_prediction(p.id) == result


def test_a_store_failure_is_not_mistaken_for_a_lost_race(service, state, alice, made):
    p = create(service, alice, made)
    state.broken = OSError("disk I/O error")
    with pytest.raises(OSError, match="disk I/O"):
        service.cancel(alice, p.id)
    assert state.updates == 1  # raised at once, not retried as if another writer had won
    state.broken = None
    assert state.get_prediction(p.id).status is Status.STARTING


def test_the_store_refuses_a_stale_transition_with_conflict(service, state, alice, made, clock):
    p = create(service, alice, made)
    stale = state.get_prediction(p.id)
    transitions.abort(now=clock.now()).apply(state, p.id)
    for late in (
        transitions.start(now=clock.now(), runner_id="r1"),
        transitions.cancel(stale, now=clock.now()),
        transitions.fail("late", now=clock.now()),
        transitions.amend({"logs": "late\n"}, status=stale.status),
    ):
        with pytest.raises(Conflict):
            late.apply(state, p.id)
    aborted = state.get_prediction(p.id)
    assert aborted.status is Status.ABORTED and aborted.error == transitions.DEADLINE_ERROR
    removed = transitions.remove_data().apply(state, p.id)  # the one change a finished prediction takes
    assert removed.data_removed and removed.status is Status.ABORTED


# --- wait ---------------------------------------------------------------------------------
def test_wait_returns_at_once_for_a_finished_prediction_and_the_last_state_on_timeout(service, state, alice, made):
    p = create(service, alice, made)
    assert service.wait(p.id, 0.01).status is Status.STARTING
    transitions.fail("boom").apply(state, p.id)
    assert service.wait(p.id, 60).status is Status.FAILED
    with pytest.raises(NotFound):
        service.wait("missing", 1)
