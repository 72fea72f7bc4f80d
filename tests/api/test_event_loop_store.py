"""The store in the API's event loop on one machine. Where a create runs
(functions/api/routers/predictions.py `_run_create`): in the event loop when the store can refuse
to wait for its write lock and the body needs no network; in a worker thread otherwise. Either way
one prediction and one job are stored, or neither. And the token's `last_used_at` write never
makes the loop wait."""

from __future__ import annotations

import sqlite3
import threading

import pytest

import functions.api.routers.predictions as routes
from functions.api.routers.predictions import inline_create


@pytest.fixture
def hops(monkeypatch):
    """Counts the creates handed to a worker thread."""
    counted: list[int] = []
    real = routes.run_in_threadpool

    async def counting(fn, *args):
        counted.append(1)
        return await real(fn, *args)

    monkeypatch.setattr(routes, "run_in_threadpool", counting)
    return counted


def stored(services, version) -> tuple[int, int]:
    predictions = len(services.state.list_predictions("alice").items)
    return predictions, services.queue.depth(f"v-{version['id']}")


def test_a_plain_create_runs_in_the_event_loop(client, services, version, hops):
    r = client.post("/v1/models/alice/hello/predictions", json={"input": {"prompt": "hi"}})
    assert r.status_code == 201, r.text
    assert hops == [] and stored(services, version) == (1, 1)


def test_a_taken_write_lock_sends_the_create_to_a_thread_which_waits_for_it(client, services, version, hops):
    holder = sqlite3.connect(str(services.settings.db_path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # a runner writing
    threading.Timer(0.3, holder.execute, args=("ROLLBACK",)).start()
    r = client.post("/v1/models/alice/hello/predictions", json={"input": {"prompt": "hi"}})
    assert r.status_code == 201, r.text
    assert hops == [1]
    assert stored(services, version) == (1, 1)  # the refused attempt in the loop left nothing behind


def test_a_webhook_or_a_url_input_is_created_in_a_thread(client, services, version, hops):
    r = client.post(
        "/v1/models/alice/hello/predictions",
        json={"input": {"prompt": "hi"}, "webhook": "https://example.com/hook"},
    )
    assert r.status_code in (201, 422), r.text
    assert hops == [1]


@pytest.mark.parametrize(
    ("body", "inline"),
    [
        ({"input": {"prompt": "hi", "steps": 2}}, True),
        ({"input": {"prompt": ["a", {"b": "c"}]}}, True),
        ({}, True),
        ({"input": {"prompt": "hi"}, "webhook": "https://example.com/h"}, False),
        ({"input": {"prompt": "hi"}, "webhook_completed": "https://example.com/h"}, False),
        ({"input": {"image": "https://example.com/a.png"}}, False),
        ({"input": {"images": ["x", "http://example.com/a.png"]}}, False),
        ({"input": {"image": "data:image/png;base64,AAAA"}}, False),
        ({"input": {"prompt": "x" * routes.INLINE_INPUT_SIZE}}, False),
        ({"input": {"numbers": list(range(routes.INLINE_INPUT_SIZE))}}, False),
        ({"input": {"numbers": list(range(1000)), "prompt": "x" * 1000}}, True),
    ],
)
def test_which_bodies_the_event_loop_creates(body, inline):
    assert inline_create(body) is inline


def test_a_job_that_cannot_be_queued_leaves_no_prediction(client, services, version, monkeypatch):
    def broken(job):
        raise RuntimeError("queue down")

    monkeypatch.setattr(services.queue, "enqueue", broken)
    with pytest.raises(RuntimeError, match="queue down"):
        services.predictions.create(
            services.accounts.get("alice"),
            services.catalog.get_model(services.accounts.get("alice"), "alice", "hello"),
            services.catalog.latest_version(services.accounts.get("alice"), "alice", "hello")[1],
            {"input": {"prompt": "hi"}},
        )
    assert stored(services, version) == (0, 0)


def test_a_taken_write_lock_never_holds_up_authentication(client, services, version):
    """The token's last_used_at is written at most once a minute, in the event loop: with the lock
    taken the request goes on at once and a later one writes it."""
    from cogplane.domain.ids import hash_token
    from tests.api.conftest import TOKEN

    with services.state.db.write() as conn:  # never used yet: the next request writes it
        conn.execute("UPDATE api_tokens SET data = json_set(data, '$.last_used_at', NULL)")
    holder = sqlite3.connect(str(services.settings.db_path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert client.get("/v1/account").status_code == 200
        assert services.state.get_token(hash_token(TOKEN)).last_used_at is None
    finally:
        holder.execute("ROLLBACK")
    assert client.get("/v1/account").status_code == 200
    assert services.state.get_token(hash_token(TOKEN)).last_used_at is not None
