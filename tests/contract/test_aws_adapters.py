"""What only the AWS adapters have: DynamoDB item limits and optimistic retries, no Scans, SQS
queue naming and redrive, S3 batch deletes (moto, in-process)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cogplane import resources
from cogplane.adapters.aws.dynamodb import DynamoOutbox, DynamoStateStore
from cogplane.adapters.aws.s3 import S3BlobStore
from cogplane.adapters.aws.sqs import SqsJobQueue
from cogplane.domain import transitions
from cogplane.domain.entities import Job, Model, Prediction, Version
from cogplane.domain.errors import Conflict, InvalidRequest
from tests.contract.conftest import Recording

TABLE = "t"


@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**resources.create_table_kwargs(TABLE))
        yield client


def prediction(n: int = 1, **fields: Any) -> Prediction:
    base = {
        "id": f"p{n}",
        "owner": "alice",
        "model": "alice/m",
        "version": "v",
        "input": {"a": 1},
        "created_at": f"2026-01-01T00:00:{n:02d}.000000Z",
    }
    return Prediction(**{**base, **fields})


def test_table_shape(ddb):
    table = ddb.describe_table(TableName=TABLE)["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert {g["IndexName"] for g in table["GlobalSecondaryIndexes"]} == {resources.GSI1, resources.GSI2}
    ddb.update_time_to_live(**resources.time_to_live_kwargs(TABLE))
    ttl = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == resources.TTL_ATTRIBUTE


def test_prediction_over_the_item_limit_is_an_invalid_request(ddb):
    store = DynamoStateStore(ddb, TABLE)
    with pytest.raises(InvalidRequest, match="too large"):
        store.create_prediction(prediction(logs="x" * 410_000))
    assert store.get_prediction("p1") is None
    store.create_prediction(prediction())
    with pytest.raises(InvalidRequest, match="too large"):
        store.update_prediction("p1", {"output": "y" * 410_000})
    assert store.get_prediction("p1") == prediction()
    store.update_prediction("p1", {"output": "y" * 300_000})  # large but within the limit


def test_concurrent_update_is_retried_without_losing_either_change(ddb):
    recording = Recording(ddb)
    store = DynamoStateStore(recording, TABLE)
    store.create_model(Model(owner="alice", name="m", created_at="2026-01-01T00:00:00.000000Z"))
    store.create_prediction(prediction())
    other = DynamoStateStore(ddb, TABLE)
    # another writer slips in between our read and our conditional write
    recording.before["put_item"] = lambda: other.update_prediction("p1", {"logs": "from the runner"})
    updated = store.update_prediction("p1", {"metrics": {"predict_time": 1.5}})
    # create model (one transaction: the model and its owner index item); create (one transaction:
    # the prediction and its model's run count); read, write (lost the race: the other writer went
    # first), read again, write
    assert recording.calls == [
        "transact_write_items",
        "transact_write_items",
        "get_item",
        "put_item",
        "get_item",
        "put_item",
    ]
    assert updated.logs == "from the runner"
    assert updated.metrics == {"predict_time": 1.5}
    assert store.get_prediction("p1") == updated


def test_concurrent_terminal_write_makes_a_late_update_conflict(ddb):
    recording = Recording(ddb)
    store = DynamoStateStore(recording, TABLE)
    outbox = DynamoOutbox(ddb, TABLE)
    store.create_prediction(prediction())
    other = DynamoStateStore(ddb, TABLE)
    recording.before["put_item"] = lambda: other.update_prediction("p1", {"status": "canceled"})
    with pytest.raises(Conflict):
        store.update_prediction("p1", {"status": "succeeded"})
    assert store.get_prediction("p1").status == "canceled"
    assert outbox.due("2100-01-01T00:00:00.000000Z", kind="webhook") == []


def test_a_runner_that_lost_the_start_race_gets_conflict(ddb):
    """Two runners took the same job: the other's start lands between our read and our
    conditional write, which DynamoDB refuses (ConditionalCheckFailed); read again, the
    prediction is no longer `starting`: Conflict, and the other runner holds it."""
    recording = Recording(ddb)
    store = DynamoStateStore(recording, TABLE)
    store.create_prediction(prediction())
    other = DynamoStateStore(ddb, TABLE)
    recording.before["put_item"] = lambda: transitions.start(now="2026-01-01T00:01:00.000000Z", runner_id="r2").apply(
        other, "p1"
    )
    with pytest.raises(Conflict):
        transitions.start(now="2026-01-01T00:01:00.000000Z", runner_id="r1").apply(store, "p1")
    assert recording.calls[-3:] == ["get_item", "put_item", "get_item"]  # refused, read again, gave up
    assert store.get_prediction("p1").runner_id == "r2"


def test_an_update_that_keeps_losing_races_is_a_conflict(ddb):
    recording = Recording(ddb)
    store = DynamoStateStore(recording, TABLE)
    store.create_prediction(prediction())
    other = DynamoStateStore(ddb, TABLE)
    recording.calls.clear()
    writes = []

    def interfere() -> None:  # another writer changes it before each of our writes
        writes.append(other.update_prediction("p1", {"logs": f"line {len(writes)}\n"}))
        recording.before["put_item"] = interfere

    recording.before["put_item"] = interfere
    with pytest.raises(Conflict, match="kept changing"):
        transitions.amend({"metrics": {"x": 1}}, status="starting").apply(store, "p1")
    stored = store.get_prediction("p1")
    assert stored.metrics == {} and stored.logs == writes[-1].logs
    assert recording.calls.count("put_item") == len(writes) > 1  # every try refused


def test_lists_never_scan(ddb):
    recording = Recording(ddb)
    store = DynamoStateStore(recording, TABLE)
    outbox = DynamoOutbox(recording, TABLE)
    t0 = "2026-01-01T00:00:00.000000Z"
    store.create_model(Model(owner="a", name="m", visibility="public", created_at=t0, latest_version_created_at=t0))
    store.put_version(Version(id="v" * 64, owner="a", name="m", created_at=t0, openapi_schema={}))
    store.create_prediction(prediction())
    store.list_models(sort_by="model_created_at")
    store.list_models()
    store.list_versions("a", "m")
    store.find_versions("v" * 64)
    store.list_predictions("alice", created_after="2025-01-01T00:00:00.000000Z")
    store.list_deployments("a")
    outbox.due("2026-01-01T00:00:00.000000Z", kind="webhook")
    assert "scan" not in recording.calls
    assert recording.calls.count("query") == 7


@pytest.mark.parametrize(
    ("pool", "expected"),
    [("pool-a", "q-pool-a"), ("version_1", "q-version_1")],
)
def test_clean_pool_names_are_kept(pool, expected):
    assert resources.pool_queue_name("q-", pool) == expected


def test_pool_queue_names_are_valid_and_distinct():
    pools = ["a/b", "a-b", "a:b", "v" * 100, "v" * 101, "alice/m@" + "f" * 64]
    names = [resources.pool_queue_name("cogplane-prod-pool-", p) for p in pools]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= resources.QUEUE_NAME_MAX
        assert all(c.isascii() and (c.isalnum() or c in "-_") for c in name)


def test_claims_long_poll_as_configured_and_the_deployed_wiring_waits_20_seconds():
    from cogplane.settings import Settings
    from cogplane.wiring import build_aws

    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        waits: list[int] = []
        client.meta.events.register(
            "provide-client-params.sqs.ReceiveMessage", lambda params, **_: waits.append(params["WaitTimeSeconds"])
        )
        queue = SqsJobQueue(client, "cogplane-pool-", wait_seconds=1)
        assert queue.claim("p") is None  # an empty queue: one long poll, not a busy loop
        queue.enqueue(Job(prediction_id="x", pool="p", enqueued_at="2026-01-01T00:00:00Z"))
        assert queue.claim("p").prediction_id == "x"
        assert waits == [1, 1]
        assert SqsJobQueue(client, "q").wait_seconds == 0  # tests and one-off callers: short polls
        assert Settings(backend="aws").queue_wait_seconds == 20
        services = build_aws(
            Settings(backend="aws", table_name="t", bucket="b", queue_prefix="cogplane-pool-"),
            clients={
                "sqs": client,
                "dynamodb": boto3.client("dynamodb", region_name="us-east-1"),
                "s3": boto3.client("s3", region_name="us-east-1"),
            },
        )
        assert services.queue.wait_seconds == 20


def test_the_deployed_sqs_client_reads_longer_than_the_longest_long_poll(monkeypatch):
    """Found by the system suites on the simulation: with the 10 s read timeout of the other
    clients, an idle runner's 20 s claim timed out, was retried, and the runner died of it."""
    from pydantic import ValidationError

    from cogplane.settings import Settings
    from cogplane.wiring import _aws_clients
    from tests.conftest import fake_aws_credentials

    fake_aws_credentials(monkeypatch, "us-east-1")
    clients = _aws_clients()
    with pytest.raises(ValidationError):
        Settings(backend="aws", queue_wait_seconds=21)  # 20 s is the longest wait (SQS's too)
    assert clients["sqs"].meta.config.read_timeout > 20
    assert clients["dynamodb"].meta.config.read_timeout == 10  # the others keep failing fast


def test_only_the_dynamodb_client_is_made_with_the_services(monkeypatch):
    """A client's service model is read when it is made (S3's about 30 ms, ECS's 25 on a Lambda
    cold start): DynamoDB's is made with the services (every request reads the table), SQS's,
    S3's and the dispatcher's ECS client on first use."""
    from cogplane.adapters.aws.clients import LazyClient
    from cogplane.wiring import _aws_client, _aws_clients
    from tests.conftest import fake_aws_credentials

    fake_aws_credentials(monkeypatch, "us-east-1")
    clients = _aws_clients()
    clients["ecs"] = _aws_client("ecs")
    assert not isinstance(clients["dynamodb"], LazyClient)
    assert [name for name in ("sqs", "s3", "ecs") if clients[name].made()] == []
    assert clients["s3"].meta.config.signature_version == "s3v4"  # first use makes it, as configured
    assert clients["s3"].made() and not clients["sqs"].made()
    assert clients["ecs"].meta.service_model.service_name == "ecs"
    with mock_aws():
        url = clients["sqs"].create_queue(QueueName="lazy")["QueueUrl"]
        assert clients["sqs"].get_queue_url(QueueName="lazy")["QueueUrl"] == url


def test_pool_queues_are_created_on_demand_with_the_dead_letter_queue():
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        dlq = client.create_queue(QueueName="dlq")["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        recording = Recording(client)
        queue = SqsJobQueue(recording, "cogplane-pool-", dlq_arn=arn)
        assert queue.depth("gpu/a") == 0
        assert queue.claim("gpu/a") is None
        assert recording.calls.count("create_queue") == 1  # the URL is cached
        url = client.get_queue_url(QueueName=queue.queue_name("gpu/a"))["QueueUrl"]
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == arn
        assert int(redrive["maxReceiveCount"]) == resources.DLQ_MAX_RECEIVE_COUNT
        # a second process (fresh cache) finds the same queue
        assert SqsJobQueue(client, "cogplane-pool-", dlq_arn=arn).depth("gpu/a") == 0
        client.delete_queue(QueueUrl=url)
        assert queue.depth("gpu/a") == 0  # the queue is made again


def test_delete_prefix_deletes_more_than_one_batch():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bucket-b")
        blobs = S3BlobStore(client, "bucket-b", key_prefix="x/")
        for i in range(1003):
            client.put_object(Bucket="bucket-b", Key=f"x/predictions/p1/{i:04d}", Body=b"")
        client.put_object(Bucket="bucket-b", Key="x/predictions/p2/keep", Body=b"")
        assert blobs.delete_prefix("predictions/p1/") == 1003
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="bucket-b").get("Contents", [])]
        assert keys == ["x/predictions/p2/keep"]
