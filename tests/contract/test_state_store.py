"""StateStore contract: run on SQLite and on DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cogplane.domain import transitions
from cogplane.domain.entities import (
    Account,
    Deployment,
    File,
    Model,
    OutboxEvent,
    Page,
    Runner,
    Version,
)
from cogplane.domain.errors import Conflict, InvalidRequest, NotFound
from cogplane.domain.status import Status
from tests.contract.conftest import pid, prediction, ts, vid


def walk(fetch: Callable[[str | None], Page[Any]], *, max_pages: int = 50) -> list[list[Any]]:
    """Every page of a paged list, following next_cursor until it is None."""
    pages, cursor = [], None
    for _ in range(max_pages):
        page = fetch(cursor)
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("the listing never ended")


def flat(pages: list[list[Any]]) -> list[Any]:
    return [item for page in pages for item in page]


def model(
    name: str, *, owner: str = "alice", created: int = 0, latest: int | None = None, visibility: str = "public"
) -> Model:
    return Model(
        owner=owner,
        name=name,
        visibility=visibility,
        created_at=ts(created),
        latest_version_id=vid(latest) if latest is not None else None,
        latest_version_created_at=ts(latest) if latest is not None else None,
        description=f"model {name}",
    )


def version(n: int, *, owner: str = "alice", name: str = "m", created: int | None = None) -> Version:
    return Version(
        id=vid(n),
        owner=owner,
        name=name,
        created_at=ts(created if created is not None else n),
        openapi_schema={"components": {"schemas": {"Input": {"type": "object", "n": n}}}},
        config={"predict": "predict.py:Predictor", "ratio": 0.25},
    )


def event(n: int, *, prediction_id: str, due: int = 0) -> OutboxEvent:
    return OutboxEvent(
        id=f"ev-{n:04d}",
        kind="webhook",
        prediction_id=prediction_id,
        payload={"n": n, "status": "x", "ratio": 0.5},
        due_at=ts(due),
        created_at=ts(due),
    )


# --- accounts and tokens --------------------------------------------------------------------


def test_account_is_created_once(store):
    first = Account(username="alice", name="Alice", created_at=ts(1), webhook_secret="whsec_abc")
    assert store.create_account(first) is True
    assert store.create_account(Account(username="alice", name="Mallory", created_at=ts(2))) is False
    assert store.get_account("alice") == first
    assert store.get_account("nobody") is None


# --- models -----------------------------------------------------------------------------------


def test_model_create_get_update_delete(store):
    m = model("m", created=1)
    store.create_model(m)
    assert store.get_model("alice", "m") == m
    assert store.get_model("alice", "other") is None
    with pytest.raises(Conflict):
        store.create_model(model("m", created=5))
    assert store.get_model("alice", "m") == m

    changed = m.replace(description="new", run_count=3, latest_version_id=vid(2), latest_version_created_at=ts(2))
    store.update_model(changed)
    assert store.get_model("alice", "m") == changed
    with pytest.raises(NotFound):
        store.update_model(model("missing"))
    assert store.get_model("alice", "missing") is None

    store.delete_model("alice", "m")
    assert store.get_model("alice", "m") is None
    with pytest.raises(NotFound):
        store.delete_model("alice", "m")


@pytest.fixture
def public_models(store):
    """7 public models with versions, created in one order and last pushed in another; plus a
    public model without versions and private models (never listed)."""
    latest_order = [6, 2, 4, 0, 5, 1, 3]
    models = []
    for i in range(7):
        owner = "alice" if i % 2 else "bob"
        m = model(f"m{i}", owner=owner, created=10 + i, latest=100 + latest_order[i])
        store.create_model(m)
        models.append(m)
    store.create_model(model("no-versions", created=50))
    store.create_model(model("secret", created=51, latest=200, visibility="private"))
    store.create_model(model("secret2", owner="bob", created=52, visibility="private"))
    return models


@pytest.mark.parametrize("descending", [True, False])
def test_public_models_by_creation_time_are_paged(store, public_models, descending):
    pages = walk(lambda c: store.list_models(sort_by="model_created_at", descending=descending, cursor=c, limit=3))
    names = [m.full_name for m in flat(pages)]
    expected = sorted(
        public_models + [model("no-versions", created=50)], key=lambda m: m.created_at, reverse=descending
    )
    assert names == [m.full_name for m in expected]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert flat(pages)[0] == expected[0]


@pytest.mark.parametrize("descending", [True, False])
def test_public_models_by_latest_version_skip_models_without_versions(store, public_models, descending):
    pages = walk(
        lambda c: store.list_models(sort_by="latest_version_created_at", descending=descending, cursor=c, limit=2)
    )
    listed = flat(pages)
    expected = sorted(public_models, key=lambda m: m.latest_version_created_at, reverse=descending)
    assert [m.full_name for m in listed] == [m.full_name for m in expected]
    assert len({m.full_name for m in listed}) == len(listed) == 7
    assert [len(p) for p in pages] == [2, 2, 2, 1]


def test_model_listing_follows_updates(store, public_models):
    hidden = public_models[0].replace(visibility="private")
    store.update_model(hidden)
    pushed = model("no-versions", created=50, latest=999)
    store.update_model(pushed)
    by_latest = flat(walk(lambda c: store.list_models(cursor=c, limit=4)))
    assert by_latest[0].full_name == "alice/no-versions"
    assert hidden.full_name not in {m.full_name for m in by_latest}
    by_created = flat(walk(lambda c: store.list_models(sort_by="model_created_at", cursor=c, limit=4)))
    assert hidden.full_name not in {m.full_name for m in by_created}
    store.delete_model("alice", "no-versions")
    assert "alice/no-versions" not in {m.full_name for m in store.list_models(limit=100).items}


def test_model_listing_exact_page_has_no_next_cursor(store):
    for i in range(4):
        store.create_model(model(f"m{i}", created=i, latest=i))
    page = store.list_models(limit=4)
    assert len(page.items) == 4
    assert page.next_cursor is None
    assert store.list_models(limit=10).next_cursor is None


def test_invalid_cursor_is_an_invalid_request(store, public_models):
    with pytest.raises(InvalidRequest):
        store.list_models(cursor="not a cursor!!")


# --- versions ---------------------------------------------------------------------------------


def test_put_version_is_idempotent(store):
    v = version(1)
    stored, created = store.put_version(v)
    assert created is True
    assert stored == v
    again = Version(**{**v.to_dict(), "openapi_schema": {"other": True}, "created_at": ts(9)})
    stored, created = store.put_version(again)
    assert created is False
    assert stored == v
    assert store.get_version("alice", "m", vid(1)) == v
    assert store.get_version("alice", "m", vid(2)) is None
    assert store.get_version("alice", "other", vid(1)) is None


def test_find_versions_is_global(store):
    store.put_version(version(1, owner="alice", name="a"))
    store.put_version(version(1, owner="bob", name="b"))
    store.put_version(version(2, owner="alice", name="a"))
    found = store.find_versions(vid(1))
    assert sorted(v.model for v in found) == ["alice/a", "bob/b"]
    assert all(v.id == vid(1) for v in found)
    assert store.find_versions(vid(3)) == []


def test_versions_are_listed_newest_first_in_pages(store):
    created = [5, 1, 4, 2, 3]
    for n, c in enumerate(created):
        store.put_version(version(n, created=c))
    store.put_version(version(9, name="other", created=3))
    pages = walk(lambda c: store.list_versions("alice", "m", cursor=c, limit=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = flat(pages)
    assert [v.created_at for v in listed] == [ts(c) for c in sorted(created, reverse=True)]
    assert {v.id for v in listed} == {vid(n) for n in range(5)}
    assert store.list_versions("alice", "nothing").items == []
    assert store.list_versions("alice", "nothing").next_cursor is None


def test_delete_version(store):
    store.put_version(version(1))
    store.put_version(version(2))
    store.delete_version("alice", "m", vid(1))
    assert store.get_version("alice", "m", vid(1)) is None
    assert [v.id for v in store.list_versions("alice", "m").items] == [vid(2)]
    assert store.find_versions(vid(1)) == []
    with pytest.raises(NotFound):
        store.delete_version("alice", "m", vid(1))


# --- predictions ------------------------------------------------------------------------------


def test_prediction_is_created_once(store):
    p = prediction(1)
    store.create_prediction(p)
    assert store.get_prediction(p.id) == p
    with pytest.raises(Conflict):
        store.create_prediction(prediction(1, input={"other": 1}))
    assert store.get_prediction(p.id) == p
    assert store.get_prediction(pid(2)) is None


def test_update_prediction_applies_changes(store):
    p = prediction(1)
    store.create_prediction(p)
    updated = store.update_prediction(
        p.id, {"status": "processing", "started_at": ts(2), "logs": "step 1\n", "metrics": {"x": 0.5}}
    )
    assert updated.status == "processing"
    assert updated.started_at == ts(2)
    assert updated.input == p.input
    assert store.get_prediction(p.id) == updated
    final = store.update_prediction(
        p.id, {"status": "succeeded", "output": ["a", 1.25, {"b": None}], "completed_at": ts(3)}
    )
    assert store.get_prediction(p.id) == final
    assert final.logs == "step 1\n"
    assert final.output == ["a", 1.25, {"b": None}]


def test_terminal_prediction_never_changes(store):
    p = prediction(1)
    store.create_prediction(p)
    done = store.update_prediction(p.id, {"status": "canceled", "completed_at": ts(2)})
    with pytest.raises(Conflict):
        store.update_prediction(p.id, {"status": "succeeded", "output": "late"})
    with pytest.raises(Conflict):
        store.update_prediction(p.id, {"logs": "more"})
    assert store.get_prediction(p.id) == done


def test_update_prediction_honours_expect_status(store):
    p = prediction(1)
    store.create_prediction(p)
    with pytest.raises(Conflict):
        store.update_prediction(p.id, {"status": "succeeded"}, expect_status=["processing"])
    assert store.get_prediction(p.id) == p
    moved = store.update_prediction(p.id, {"status": "processing"}, expect_status={"starting"})
    assert moved.status == "processing"
    with pytest.raises(Conflict):  # a second runner cannot claim it again
        store.update_prediction(p.id, {"status": "processing", "runner_id": "r2"}, expect_status=["starting"])
    assert store.get_prediction(p.id).runner_id is None
    # a terminal prediction may be touched when asked for explicitly (e.g. data removal)
    store.update_prediction(p.id, {"status": "succeeded"})
    removed = store.update_prediction(
        p.id, {"input": None, "output": None, "data_removed": True}, expect_status=["succeeded", "failed", "canceled"]
    )
    assert removed.data_removed is True
    assert store.get_prediction(p.id).status == "succeeded"


def test_transitions_that_lost_a_race_are_a_conflict_and_change_nothing(store, outbox):
    """Every transition is conditional on the status it was decided from: a writer that lost the
    race gets the domain's Conflict (never an adapter error), and nothing of its change is kept."""
    p = prediction(1)
    store.create_prediction(p)
    stale = store.get_prediction(p.id)
    assert stale is not None
    running = transitions.start(now=ts(2), runner_id="r1").apply(store, p.id)
    assert running.status is Status.PROCESSING and running.runner_id == "r1"
    for late in (
        transitions.start(now=ts(3), runner_id="r2"),  # a second runner given the same job
        transitions.cancel(stale, now=ts(3)),  # the owner's cancel, decided from `starting`
        transitions.abort(now=ts(3)),  # the Cancel-After deadline of a queued prediction
        transitions.fail("setup failed", now=ts(3), from_=[Status.STARTING]),
    ):
        with pytest.raises(Conflict):
            late.apply(store, p.id)
    assert store.get_prediction(p.id) == running
    done = transitions.finish(Status.SUCCEEDED, {"output": "x", "completed_at": ts(4)}).apply(store, p.id)
    assert done.status is Status.SUCCEEDED
    for late in (
        transitions.cancel(running, now=ts(5)),
        transitions.time_out(running, now=ts(5)),
        transitions.finish(Status.FAILED, {"error": "late"}),
        transitions.amend({"logs": "late\n"}, status=Status.PROCESSING),
    ):
        with pytest.raises(Conflict):
            late.apply(store, p.id)
    assert store.get_prediction(p.id) == done
    completed = [e for e in outbox.due(ts(100), kind="webhook") if e.payload == {"event": "completed"}]
    assert completed == []  # no webhook asked for; and no second terminal write ever happened
    removed = transitions.remove_data().apply(store, p.id)
    assert removed.data_removed and removed.status is Status.SUCCEEDED and removed.output is None


def test_racing_runners_start_a_prediction_once(state):
    """Threads racing to take one queued prediction: exactly one wins, the others get Conflict.
    Not run on moto, which does not make conditional writes atomic across threads
    (docs/moto-notes.md); the DynamoDB adapter's lost race is replayed deterministically in
    test_aws_adapters.py."""
    if state.name == "aws":
        pytest.skip("moto does not serialize concurrent conditional writes")
    import threading

    store = state.store
    p = prediction(1)
    store.create_prediction(p)
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(6)

    def runner(name: str) -> None:
        barrier.wait()
        try:
            transitions.start(now=ts(2), runner_id=name).apply(store, p.id)
            outcomes[name] = "won"
        except Conflict:
            outcomes[name] = "conflict"

    threads = [threading.Thread(target=runner, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [name for name, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == 6 and len(winners) == 1
    assert store.get_prediction(p.id).runner_id == winners[0]


def test_update_missing_prediction_is_not_found(store):
    with pytest.raises(NotFound):
        store.update_prediction(pid(404), {"status": "processing"})


def test_outbox_events_are_written_with_the_change(store, outbox):
    p = prediction(1)
    store.create_prediction(p, outbox=[event(1, prediction_id=p.id, due=1)])
    store.update_prediction(
        p.id, {"status": "succeeded"}, outbox=[event(2, prediction_id=p.id, due=2), event(3, prediction_id=p.id, due=3)]
    )
    due = outbox.due(ts(10), kind="webhook")
    assert [e.id for e in due] == ["ev-0001", "ev-0002", "ev-0003"]
    assert due[1] == event(2, prediction_id=p.id, due=2)


def test_outbox_events_are_not_written_when_the_condition_fails(store, outbox):
    p = prediction(1)
    store.create_prediction(p)
    store.update_prediction(p.id, {"status": "failed"})
    with pytest.raises(Conflict):
        store.update_prediction(p.id, {"status": "succeeded"}, outbox=[event(1, prediction_id=p.id)])
    with pytest.raises(Conflict):
        store.create_prediction(prediction(1), outbox=[event(2, prediction_id=p.id)])
    with pytest.raises(NotFound):
        store.update_prediction(pid(9), {"status": "failed"}, outbox=[event(3, prediction_id=pid(9))])
    assert outbox.due(ts(1000), kind="webhook") == []
    assert store.get_prediction(p.id).status == "failed"


@pytest.fixture
def many_predictions(store):
    """alice: 7 predictions created at minutes 10..16 (created out of order); bob: 2."""
    for n in [13, 10, 16, 11, 15, 12, 14]:
        store.create_prediction(prediction(n, created=n))
    store.create_prediction(prediction(90, owner="bob", created=12))
    store.create_prediction(prediction(91, owner="bob", created=20))


def test_predictions_are_listed_newest_first_per_owner(store, many_predictions):
    pages = walk(lambda c: store.list_predictions("alice", cursor=c, limit=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [p.id for p in flat(pages)] == [pid(n) for n in range(16, 9, -1)]
    assert all(p.owner == "alice" for p in flat(pages))
    bob = store.list_predictions("bob")
    assert [p.id for p in bob.items] == [pid(91), pid(90)]
    assert bob.next_cursor is None
    assert store.list_predictions("carol").items == []


def test_trainings_are_listed_apart_from_predictions(store, many_predictions):
    for n in (30, 31, 32):
        store.create_prediction(prediction(n, created=n, kind="training", destination="alice/tuned"))
    predictions = flat(walk(lambda c: store.list_predictions("alice", cursor=c, limit=3)))
    assert [p.id for p in predictions] == [pid(n) for n in range(16, 9, -1)]  # no training among them
    pages = walk(lambda c: store.list_predictions("alice", kind="training", cursor=c, limit=2))
    assert [len(p) for p in pages] == [2, 1]
    trainings = flat(pages)
    assert [p.id for p in trainings] == [pid(32), pid(31), pid(30)]
    assert all(t.kind == "training" and t.destination == "alice/tuned" for t in trainings)
    assert store.list_predictions("bob", kind="training").items == []
    after = store.list_predictions("alice", kind="training", created_after=ts(30)).items
    assert [p.id for p in after] == [pid(32), pid(31)]


def test_trained_version_fields_round_trip(store):
    store.create_model(Model(owner="alice", name="tuned", created_at=ts(1)))
    version = Version(
        id="b" * 64,
        owner="alice",
        name="tuned",
        created_at=ts(2),
        openapi_schema={"x": 1},
        bundle_key="bundles/base.tar.gz",
        weights_key="weights/alice/tuned/w.txt",
        trained_from="alice/base:" + "a" * 64,
        training_id="t1",
    )
    store.put_version(version)
    got = store.get_version("alice", "tuned", "b" * 64)
    assert (got.weights_key, got.trained_from, got.training_id) == (
        "weights/alice/tuned/w.txt",
        "alice/base:" + "a" * 64,
        "t1",
    )


def test_prediction_list_filters_by_creation_time(store, many_predictions):
    after = flat(walk(lambda c: store.list_predictions("alice", created_after=ts(12), cursor=c, limit=2)))
    assert [p.id for p in after] == [pid(n) for n in (16, 15, 14, 13)]  # created_after is exclusive
    before = flat(walk(lambda c: store.list_predictions("alice", created_before=ts(13), cursor=c, limit=2)))
    assert [p.id for p in before] == [pid(n) for n in (12, 11, 10)]  # created_before is exclusive
    both = flat(
        walk(lambda c: store.list_predictions("alice", created_after=ts(10), created_before=ts(15), cursor=c, limit=2))
    )
    assert [p.id for p in both] == [pid(n) for n in (14, 13, 12, 11)]
    assert store.list_predictions("alice", created_after=ts(15), created_before=ts(11)).items == []
    assert store.list_predictions("alice", created_after=ts(16)).items == []


def test_cursor_of_one_owner_does_not_show_another_owners_predictions(store, many_predictions):
    page = store.list_predictions("alice", limit=2)
    try:
        other = store.list_predictions("bob", cursor=page.next_cursor, limit=10)
    except InvalidRequest:
        return
    assert all(p.owner == "bob" for p in other.items)


def test_delete_prediction_is_idempotent(store):
    store.create_prediction(prediction(1))
    store.create_prediction(prediction(2))
    store.delete_prediction(pid(1))
    assert store.get_prediction(pid(1)) is None
    store.delete_prediction(pid(1))
    assert [p.id for p in store.list_predictions("alice").items] == [pid(2)]


def test_large_prediction_round_trips(store):
    p = prediction(1, logs="x" * 100_000)
    store.create_prediction(p)
    assert store.get_prediction(p.id).logs == p.logs


# --- deployments --------------------------------------------------------------------------------


def deployment(name: str, *, owner: str = "acme", release: int = 1) -> Deployment:
    return Deployment(
        owner=owner,
        name=name,
        model="alice/m",
        version=vid(1),
        hardware="cpu",
        min_instances=0,
        max_instances=2,
        release_number=release,
        release_created_at=ts(release),
        created_by="alice",
    )


def test_deployment_crud_with_release_check(store):
    d = deployment("d")
    store.create_deployment(d)
    assert store.get_deployment("acme", "d") == d
    assert store.get_deployment("acme", "x") is None
    with pytest.raises(Conflict):
        store.create_deployment(deployment("d", release=5))

    d2 = d.replace(version=vid(2), release_number=2, release_created_at=ts(2))
    store.update_deployment(d2, expect_release=1)
    assert store.get_deployment("acme", "d") == d2
    with pytest.raises(Conflict):  # a concurrent editor based on release 1 loses
        store.update_deployment(d.replace(max_instances=9, release_number=2), expect_release=1)
    assert store.get_deployment("acme", "d") == d2

    store.delete_deployment("acme", "d")
    assert store.get_deployment("acme", "d") is None


def test_deployments_are_listed_per_owner_in_pages(store):
    for name in ["e", "b", "d", "a", "c"]:
        store.create_deployment(deployment(name))
    store.create_deployment(deployment("z", owner="other"))
    pages = walk(lambda c: store.list_deployments("acme", cursor=c, limit=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [d.name for d in flat(pages)] == ["a", "b", "c", "d", "e"]
    assert [d.name for d in store.list_deployments("other").items] == ["z"]
    assert store.list_deployments("nobody").items == []


def test_warm_deployments_are_listed_across_owners(store):
    store.create_deployment(deployment("cold"))
    store.create_deployment(deployment("w2", owner="zed").replace(min_instances=2, max_instances=3))
    store.create_deployment(deployment("w1").replace(min_instances=1))
    store.create_deployment(deployment("w0", owner="bob").replace(min_instances=1))
    assert [(d.owner, d.name) for d in store.list_warm_deployments()] == [("acme", "w1"), ("bob", "w0"), ("zed", "w2")]
    assert [d.name for d in store.list_warm_deployments(limit=2)] == ["w1", "w0"]
    assert store.list_warm_deployments()[2].min_instances == 2

    cooled = store.get_deployment("acme", "w1")
    store.update_deployment(cooled.replace(min_instances=0, release_number=2), expect_release=1)
    warmed = store.get_deployment("acme", "cold")
    store.update_deployment(warmed.replace(min_instances=1, release_number=2), expect_release=1)
    store.delete_deployment("zed", "w2")
    assert [(d.owner, d.name) for d in store.list_warm_deployments()] == [("acme", "cold"), ("bob", "w0")]


@pytest.fixture
def dynamo_queries(state) -> list[str]:
    """DynamoDB only: the index of every Query the store makes; any Scan fails the test."""
    if state.name != "aws":
        pytest.skip("Scan is a DynamoDB notion")
    calls: list[str] = []
    query = state.store.client.query

    def forbidden_scan(**kwargs: Any) -> Any:
        raise AssertionError("listing must not Scan")

    def counting_query(**kwargs: Any) -> Any:
        calls.append(kwargs.get("IndexName", ""))
        return query(**kwargs)

    state.store.client.scan = forbidden_scan
    state.store.client.query = counting_query
    return calls


def test_warm_deployment_listing_is_a_query_not_a_scan(state, dynamo_queries):
    store = state.store
    store.create_deployment(deployment("w").replace(min_instances=1))
    assert [d.name for d in store.list_warm_deployments()] == ["w"]
    assert dynamo_queries == ["gsi2"]


# --- runners ------------------------------------------------------------------------------------


def runner(n: int, pool: str, **extra: Any) -> Runner:
    return Runner(id=f"r-{n:04d}", pool=pool, started_at=ts(n), heartbeat_at=ts(n), **extra)


def test_runner_record_put_get_replace_delete(store):
    assert store.get_runner("r-0001") is None
    r1 = runner(1, "v-" + vid(1), pid=123, host="h")
    store.put_runner(r1)
    assert store.get_runner("r-0001") == r1
    beat = r1.replace(state="ready", version=vid(1), heartbeat_at=ts(5), in_flight=[pid(1), pid(2)])
    store.put_runner(beat)  # a heartbeat replaces the record
    assert store.get_runner("r-0001") == beat
    assert store.list_runners() == [beat]
    store.delete_runner("r-0001")
    assert store.get_runner("r-0001") is None
    assert store.list_runners() == []
    store.delete_runner("r-0001")  # idempotent
    store.delete_runner("r-never")


def test_runners_are_listed_all_or_per_pool(store):
    a, b = "v-" + vid(1), "d-acme.my.model-v2." + vid(2)
    prefix = "v-" + vid(1)[:-1]  # a pool name that is a prefix of another must not match it
    made = [runner(3, a), runner(1, b), runner(2, a), runner(4, prefix), runner(5, a + "x")]
    for x in made:
        store.put_runner(x)
    assert [x.id for x in store.list_runners()] == ["r-0001", "r-0002", "r-0003", "r-0004", "r-0005"]
    assert [x.id for x in store.list_runners(a)] == ["r-0002", "r-0003"]
    assert [x.id for x in store.list_runners(b)] == ["r-0001"]
    assert [x.id for x in store.list_runners(prefix)] == ["r-0004"]
    assert store.list_runners("v-none") == []

    store.put_runner(runner(2, b))  # a record that moved pool is listed under the new one only
    assert [x.id for x in store.list_runners(a)] == ["r-0003"]
    assert [x.id for x in store.list_runners(b)] == ["r-0001", "r-0002"]
    store.delete_runner("r-0003")
    assert store.list_runners(a) == []


def test_many_runners_are_all_listed(store):
    for n in range(130):  # more than one query page
        store.put_runner(runner(n, "v-" + vid(n % 2)))
    assert len(store.list_runners()) == 130
    assert len(store.list_runners("v-" + vid(1))) == 65


def test_runner_listing_is_queries_not_scans(state, dynamo_queries):
    store = state.store
    store.put_runner(runner(1, "v-a"))
    store.list_runners()
    store.list_runners("v-a")
    assert dynamo_queries == ["gsi1", "gsi1"]


def test_run_count_increments_atomically_and_survives_model_updates(store):
    """Each created prediction adds one run to its model, in the same write."""
    from cogplane.domain.entities import Model

    store.create_model(Model(owner="alice", name="counted", created_at="2026-01-01T00:00:00.000000Z"))
    for n in range(3):
        store.create_prediction(prediction(100 + n, model="alice/counted"))
    assert store.get_model("alice", "counted").run_count == 3
    model = store.get_model("alice", "counted")
    store.update_model(model.replace(description="now described"))
    store.create_prediction(prediction(110, model="alice/counted"))
    again = store.get_model("alice", "counted")
    assert again.run_count == 4 and again.description == "now described"
    # a prediction of a model that is gone is stored, uncounted
    store.create_prediction(prediction(111, model="alice/missing"))
    assert store.get_prediction(pid(111)) is not None and store.get_model("alice", "missing") is None


def _file(n: int, *, owner: str = "alice") -> File:
    return File(
        id=f"file{n:06d}",
        owner=owner,
        name=f"f{n}.txt",
        content_type="text/plain",
        size=n,
        etag="e",
        checksums={"md5": "e"},
        metadata={"n": n},
        created_at=ts(n),
        expires_at=ts(n + 1000),
        blob_key=f"files/{owner}/file{n:06d}/f{n}.txt",
    )


def test_files_create_once_get_delete(store):
    store.create_file(_file(1))
    assert store.get_file("file000001") == _file(1)
    with pytest.raises(Conflict):
        store.create_file(_file(1))
    store.delete_file("file000001")
    assert store.get_file("file000001") is None
    store.delete_file("file000001")  # idempotent


def test_files_are_listed_newest_first_per_owner_over_pages(store):
    for n in range(1, 8):
        store.create_file(_file(n))
    store.create_file(_file(50, owner="bob"))
    seen, cursor = [], None
    while True:
        page = store.list_files("alice", cursor=cursor, limit=3)
        seen += [f.id for f in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"file{n:06d}" for n in range(7, 0, -1)]
    assert [f.id for f in store.list_files("bob").items] == ["file000050"]


def test_every_adapter_implements_every_port_method():
    """A port method added to one adapter set only would pass every other contract test."""
    import inspect

    from cogplane import ports
    from cogplane.adapters.aws.dynamodb import DynamoOutbox, DynamoRateLimiter, DynamoStateStore
    from cogplane.adapters.aws.s3 import S3BlobStore
    from cogplane.adapters.aws.sqs import SqsJobQueue
    from cogplane.adapters.local.disk import DiskBlobStore
    from cogplane.adapters.local.sqlite import SqliteJobQueue, SqliteOutbox, SqliteRateLimiter, SqliteStateStore

    def methods(cls) -> set[str]:
        return {n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}

    for port, adapters in (
        (ports.StateStore, (SqliteStateStore, DynamoStateStore)),
        (ports.Outbox, (SqliteOutbox, DynamoOutbox)),
        (ports.JobQueue, (SqliteJobQueue, SqsJobQueue)),
        (ports.BlobStore, (DiskBlobStore, S3BlobStore)),
        (ports.RateLimiter, (SqliteRateLimiter, DynamoRateLimiter)),
    ):
        for adapter in adapters:
            assert methods(port) <= methods(adapter), (adapter.__name__, sorted(methods(port) - methods(adapter)))


def test_safety_fields_round_trip(store):
    """The safety checker's stored fields: a model's setting, a prediction's check state."""
    m = model("checked", created=1)
    assert m.safety_checker == "off"
    store.create_model(m.replace(safety_checker="web"))
    assert store.get_model("alice", "checked").safety_checker == "web"
    store.update_model(store.get_model("alice", "checked").replace(safety_checker="all"))
    assert store.get_model("alice", "checked").safety_checker == "all"

    p = prediction(7).replace(safety={"checked": False, "flagged": []})
    store.create_prediction(p)
    assert store.get_prediction(p.id).safety == {"checked": False, "flagged": []}
    store.update_prediction(p.id, {"status": "processing", "started_at": ts(2)})
    done = store.update_prediction(
        p.id,
        {
            "status": "succeeded",
            "completed_at": ts(3),
            "output": ["x", "y"],
            "safety": {"checked": True, "flagged": [1]},
        },
    )
    assert store.get_prediction(p.id) == done
    assert done.safety == {"checked": True, "flagged": [1]}
    assert store.get_prediction(prediction(8).id) is None
    store.create_prediction(prediction(8))
    assert store.get_prediction(prediction(8).id).safety is None


def test_sqlite_database_of_an_older_release_gains_the_kind_column(tmp_path):
    """State survives upgrades: a predictions table without `kind` is migrated on open."""
    import sqlite3

    from cogplane.adapters.local.sqlite import Database, SqliteStateStore

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE predictions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at TEXT NOT NULL,"
        " status TEXT NOT NULL, data TEXT NOT NULL);"
        "CREATE INDEX predictions_by_owner ON predictions (owner, created_at, id);"
    )
    old.execute(
        "INSERT INTO predictions VALUES ('p1', 'alice', ?, 'succeeded', ?)",
        (
            ts(1),
            '{"id": "p1", "owner": "alice", "model": "a/b", "version": "v", "input": {},'
            f' "created_at": "{ts(1)}", "status": "succeeded"}}',
        ),
    )
    old.commit()
    old.close()
    store = SqliteStateStore(Database(str(path)))
    assert [p.id for p in store.list_predictions("alice").items] == ["p1"]
    assert store.list_predictions("alice", kind="training").items == []
    SqliteStateStore(Database(str(path)))  # opening again is harmless
