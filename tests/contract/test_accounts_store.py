"""Contract of the teams port methods (accounts, tokens, members, usage) and the RateLimiter,
on SQLite and on DynamoDB (moto)."""

from __future__ import annotations

import json
import threading

import pytest

from cogplane.domain.entities import Account, ApiToken, Membership
from cogplane.domain.errors import Conflict, NotFound
from cogplane.domain.status import Status
from tests.contract.conftest import pid, prediction, ts


def token(n: int, account: str = "alice", **fields) -> ApiToken:
    return ApiToken(
        **{
            "id": f"tok_{n}",
            "account": account,
            "name": f"t{n}",
            "token_hash": f"{n:064x}",
            "created_at": ts(n),
            **fields,
        }
    )


def test_account_update_and_list(store):
    for name in ("carol", "alice", "bob", "team"):
        store.create_account(
            Account(username=name, type="organization" if name == "team" else "user", created_at=ts(1))
        )
    alice = store.get_account("alice")
    store.update_account(alice.replace(admin=True, name="Alice A."))
    assert store.get_account("alice").admin is True
    assert store.get_account("alice").name == "Alice A."
    with pytest.raises(NotFound):
        store.update_account(Account(username="nobody"))
    first = store.list_accounts(limit=3)
    assert [a.username for a in first.items] == ["alice", "bob", "carol"]
    rest = store.list_accounts(cursor=first.next_cursor, limit=3)
    assert [a.username for a in rest.items] == ["team"] and rest.next_cursor is None
    assert rest.items[0].type == "organization"


def test_models_of_one_owner_public_and_private(store):
    from cogplane.domain.entities import Model
    from cogplane.domain.errors import Conflict as Taken

    for owner, name, visibility in (
        ("team", "b", "private"),
        ("team", "a", "public"),
        ("team", "c", "private"),
        ("alice", "x", "private"),
    ):
        store.create_model(Model(owner=owner, name=name, visibility=visibility, created_at=ts(1)))
    with pytest.raises(Taken):
        store.create_model(Model(owner="team", name="a", created_at=ts(2)))
    first = store.list_models_of("team", limit=2)
    assert [m.name for m in first.items] == ["a", "b"] and first.items[1].visibility == "private"
    rest = store.list_models_of("team", cursor=first.next_cursor, limit=2)
    assert [m.name for m in rest.items] == ["c"] and rest.next_cursor is None
    store.delete_model("team", "b")
    with pytest.raises(NotFound):
        store.delete_model("team", "b")
    assert [m.name for m in store.list_models_of("team").items] == ["a", "c"]
    assert [m.full_name for m in store.list_models_of("alice").items] == ["alice/x"]
    assert store.list_models_of("nobody").items == []


def test_tokens_by_hash_by_account_and_revoked_by_id(store):
    assert store.put_token(token(1)) is True
    assert store.put_token(token(2)) is True
    assert store.put_token(token(3, account="bob")) is True
    assert store.put_token(token(1, name="again")) is False  # same hash: unchanged
    assert store.put_token(token(9, account="mallory", token_hash=f"{1:064x}")) is False  # never moved
    assert store.get_token(f"{1:064x}") == token(1)
    assert store.list_tokens("mallory") == []
    assert store.get_token("f" * 64) is None
    assert [t.id for t in store.list_tokens("alice")] == ["tok_1", "tok_2"]
    assert [t.id for t in store.list_tokens("bob")] == ["tok_3"]
    removed = store.delete_token("tok_1")
    assert removed is not None and removed.id == "tok_1" and removed.account == "alice"
    assert store.get_token(f"{1:064x}") is None
    assert store.delete_token("tok_1") is None
    assert [t.id for t in store.list_tokens("alice")] == ["tok_2"]


def test_touch_token_sets_last_used_and_never_moves_it_back(store):
    store.put_token(token(1))
    store.touch_token(f"{1:064x}", ts(5))
    assert store.get_token(f"{1:064x}").last_used_at == ts(5)
    store.touch_token(f"{1:064x}", ts(3))  # an older request finishing late
    assert store.get_token(f"{1:064x}").last_used_at == ts(5)
    store.touch_token(f"{1:064x}", ts(9))
    assert store.get_token(f"{1:064x}").last_used_at == ts(9)
    assert store.list_tokens("alice")[0].last_used_at == ts(9)
    store.touch_token("e" * 64, ts(9))  # gone: nothing happens, nothing is created
    assert store.get_token("e" * 64) is None


def test_members(store):
    store.put_member(Membership(org="team", username="bob", role="member", created_at=ts(1)))
    store.put_member(Membership(org="team", username="alice", role="owner", created_at=ts(1)))
    store.put_member(Membership(org="other", username="alice", role="member", created_at=ts(2)))
    assert store.get_member("team", "alice").role == "owner"
    assert store.get_member("team", "carol") is None
    assert [m.username for m in store.list_members("team")] == ["alice", "bob"]
    assert [(m.org, m.role) for m in store.list_memberships("alice")] == [("other", "member"), ("team", "owner")]
    store.put_member(Membership(org="team", username="bob", role="owner", created_at=ts(1)))
    assert store.get_member("team", "bob").role == "owner"
    assert store.delete_member("team", "bob") is True
    assert store.delete_member("team", "bob") is False
    assert store.get_member("team", "bob") is None
    assert [m.org for m in store.list_memberships("bob")] == []
    assert [m.username for m in store.list_members("team")] == ["alice"]


def _finish(
    store, n: int, *, owner: str, seconds: float, hardware: str, day_minute: int, status: str = Status.SUCCEEDED.value
) -> None:
    store.create_prediction(prediction(n, owner=owner, hardware=hardware))
    store.update_prediction(pid(n), {"status": "processing", "started_at": ts(day_minute)})
    store.update_prediction(
        pid(n), {"status": status, "completed_at": ts(day_minute), "metrics": {"predict_time": seconds}}
    )


def test_usage_is_recorded_once_when_a_prediction_ends(store):
    _finish(store, 1, owner="alice", seconds=1.25, hardware="cpu", day_minute=10)
    _finish(store, 2, owner="alice", seconds=2.5, hardware="cpu", day_minute=20)
    _finish(store, 3, owner="alice", seconds=4.0, hardware="gpu-t4", day_minute=30, status="failed")
    _finish(store, 4, owner="bob", seconds=8.0, hardware="cpu", day_minute=40)
    # a prediction that is still running records nothing; one without predict_time neither
    store.create_prediction(prediction(5, owner="alice"))
    store.update_prediction(pid(5), {"status": "processing"})
    store.create_prediction(prediction(6, owner="alice"))
    store.update_prediction(pid(6), {"status": "canceled", "completed_at": ts(50)})
    # a terminal prediction never changes again, so it is never counted twice
    with pytest.raises(Conflict):
        store.update_prediction(pid(1), {"metrics": {"predict_time": 100.0}})
    rows = store.list_usage("alice", since="2026-01-01", until="2026-01-01")
    assert [(r.day, r.hardware, r.predictions) for r in rows] == [("2026-01-01", "cpu", 2), ("2026-01-01", "gpu-t4", 1)]
    assert rows[0].predict_time == pytest.approx(3.75)
    assert rows[1].predict_time == pytest.approx(4.0)
    assert [r.predict_time for r in store.list_usage("bob", since="2025-12-31", until="2026-01-02")] == [8.0]
    assert store.list_usage("alice", since="2026-01-02", until="2026-01-31") == []
    assert store.list_usage("carol", since="2026-01-01", until="2026-01-01") == []


# --- RateLimiter ------------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refuses_with_retry_after(limiter):
    now = 1_000_000.0
    decisions = [limiter.take("alice:create", per_minute=5, now=now) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused.limit == 5 and refused.remaining == 0 and refused.retry_after == 12  # 60 s / 5
    # another key is a different bucket
    assert limiter.take("bob:create", per_minute=5, now=now).allowed
    # refill: one token after 12 s, not before
    assert not limiter.take("alice:create", per_minute=5, now=now + 11).allowed
    assert limiter.take("alice:create", per_minute=5, now=now + 12.5).allowed
    # full again after a minute: the whole burst is back, never more
    later = [limiter.take("alice:create", per_minute=5, now=now + 600) for _ in range(6)]
    assert [d.allowed for d in later] == [True] * 5 + [False]


def test_bucket_at_the_default_create_limit(limiter):
    now = 2_000_000.0
    allowed = sum(limiter.take("acct:create", per_minute=600, now=now).allowed for _ in range(601))
    assert allowed == 600
    refused = limiter.take("acct:create", per_minute=600, now=now)
    assert not refused.allowed and refused.retry_after == 1


def test_bucket_is_shared_by_concurrent_takers(limiter):
    """Threads racing for one bucket spend each token once (atomic read-modify-write). Not run
    on moto, which does not make conditional writes atomic across threads (docs/moto-notes.md); the
    DynamoDB adapter's lost race is replayed deterministically below."""
    if type(limiter).__name__.startswith("Dynamo"):
        pytest.skip("moto does not serialize concurrent conditional writes")
    now = 3_000_000.0
    results: list[bool] = []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            ok = limiter.take("racy", per_minute=25, now=now).allowed
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40 and sum(results) == 25


def test_dynamo_bucket_reads_again_after_losing_a_race():
    import boto3
    from moto import mock_aws

    from cogplane import resources
    from cogplane.adapters.aws.dynamodb import DynamoRateLimiter
    from tests.contract.conftest import Recording

    with mock_aws():
        raw = boto3.client("dynamodb", region_name="us-east-1")
        raw.create_table(**resources.create_table_kwargs("t"))
        recording = Recording(raw)
        limiter = DynamoRateLimiter(recording, "t")
        other = DynamoRateLimiter(raw, "t")
        assert limiter.take("k", per_minute=2, now=100.0).remaining == 1
        recording.calls.clear()
        # between this take's read and its conditional put, another API instance takes the last token
        recording.before["put_item"] = lambda: other.take("k", per_minute=2, now=100.0)
        decision = limiter.take("k", per_minute=2, now=100.0)
        assert not decision.allowed and decision.retry_after == 30
        assert recording.calls == ["get_item", "put_item", "get_item", "put_item"]  # lost, read again


def test_tokens_of_older_installs_keep_working(tmp_path):
    """Before named tokens, SQLite kept bare hashes in `tokens` and DynamoDB {token_hash,
    username, created_at} items: both are still found (SQLite moves them over once)."""
    import sqlite3

    import boto3
    from moto import mock_aws

    from cogplane import resources
    from cogplane.adapters.aws.dynamodb import DynamoStateStore
    from cogplane.adapters.local.sqlite import Database, SqliteStateStore

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, created_at TEXT NOT NULL)")
    old.execute("INSERT INTO tokens VALUES (?, 'alice', ?)", ("a" * 64, ts(1)))
    old.commit()
    old.close()
    found = SqliteStateStore(Database(str(path))).get_token("a" * 64)
    assert found is not None and found.account == "alice" and found.id.startswith("tok_")
    assert [t.token_hash for t in SqliteStateStore(Database(str(path))).list_tokens("alice")] == ["a" * 64]

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**resources.create_table_kwargs("t"))
        client.put_item(
            TableName="t",
            Item={
                "pk": {"S": "TOKEN#" + "b" * 64},
                "sk": {"S": "TOKEN"},
                "data": {"S": json.dumps({"token_hash": "b" * 64, "username": "bob", "created_at": ts(2)})},
            },
        )
        found = DynamoStateStore(client, "t").get_token("b" * 64)
        assert found is not None and found.account == "bob" and found.name == "default"
