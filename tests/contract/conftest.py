"""Port contract fixtures: every fixture runs each test twice, on the local adapters (SQLite,
disk) and on the AWS adapters (DynamoDB, SQS, S3 under moto's in-process `mock_aws`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cogplane import clock
from cogplane.adapters.local import disk as local_disk
from cogplane.adapters.local import sqlite as local_sqlite
from cogplane.domain.entities import Prediction
from cogplane.ports import BlobStore, JobQueue, Outbox, StateStore
from tests.conftest import fake_aws_credentials

BACKENDS = ["local", "aws"]
REGION = "us-east-1"
TABLE = "cogplane-test-state"
BUCKET = "cogplane-test-blobs"
QUEUE_PREFIX = "cogplane-test-pool-"


# --- entity builders shared by the contract suites ---------------------------------------------


def ts(n: int) -> str:
    """Distinct, ordered timestamps: n minutes after a fixed start (n < 1440)."""
    return f"2026-01-01T{n // 60:02d}:{n % 60:02d}:00.000000Z"


def vid(n: int) -> str:
    return f"{n:064x}"


def pid(n: int) -> str:
    return f"p{n:025d}"


def prediction(n: int, *, owner: str = "alice", created: int | None = None, **fields: Any) -> Prediction:
    values: dict[str, Any] = {
        "id": pid(n),
        "owner": owner,
        "model": "alice/m",
        "version": vid(1),
        "input": {"prompt": f"hello {n}", "scale": 1.5, "nested": {"list": [1, 2.5, None, True]}},
        "created_at": ts(created if created is not None else n),
        "pool": "pool-a",
    }
    return Prediction(**{**values, **fields})


class Recording:
    """Wraps a boto3 client: records each operation; `before` hooks run ahead of one."""

    def __init__(self, client: Any):
        self._client = client
        self.calls: list[str] = []
        self.before: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            hook = self.before.pop(name, None)
            if hook:
                hook()
            return attr(*args, **kwargs)

        return call


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_credentials(monkeypatch, REGION)


def _clock() -> Any:
    return clock.SystemClock()


def _boto_client(service: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, region_name=REGION, config=Config(**config))


@dataclass
class StateBackend:
    name: str
    store: StateStore
    outbox: Outbox


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest, tmp_path) -> Iterator[StateBackend]:
    if request.param == "local":
        sqlite = local_sqlite
        db = sqlite.Database(str(tmp_path / "state.db"))
        yield StateBackend("local", sqlite.SqliteStateStore(db), sqlite.SqliteOutbox(db))
        return
    from moto import mock_aws

    from cogplane import resources
    from cogplane.adapters.aws.dynamodb import DynamoOutbox, DynamoStateStore

    with mock_aws():
        client = _boto_client("dynamodb")
        client.create_table(**resources.create_table_kwargs(TABLE))
        client.update_time_to_live(**resources.time_to_live_kwargs(TABLE))
        yield StateBackend("aws", DynamoStateStore(client, TABLE), DynamoOutbox(client, TABLE))


@pytest.fixture(params=BACKENDS)
def limiter(request: pytest.FixtureRequest, tmp_path) -> Iterator[Any]:
    if request.param == "local":
        db = local_sqlite.Database(str(tmp_path / "rate.db"))
        yield local_sqlite.SqliteRateLimiter(db)
        return
    from moto import mock_aws

    from cogplane import resources
    from cogplane.adapters.aws.dynamodb import DynamoRateLimiter

    with mock_aws():
        client = _boto_client("dynamodb")
        client.create_table(**resources.create_table_kwargs(TABLE))
        yield DynamoRateLimiter(client, TABLE)


@pytest.fixture
def store(state: StateBackend) -> StateStore:
    return state.store


@pytest.fixture
def outbox(state: StateBackend) -> Outbox:
    return state.outbox


@pytest.fixture(params=BACKENDS)
def job_queue(request: pytest.FixtureRequest, tmp_path) -> Iterator[JobQueue]:
    if request.param == "local":
        sqlite = local_sqlite
        db = sqlite.Database(str(tmp_path / "queue.db"))
        yield sqlite.SqliteJobQueue(db, _clock())
        return
    from moto import mock_aws

    from cogplane import resources
    from cogplane.adapters.aws.sqs import SqsJobQueue

    with mock_aws():
        client = _boto_client("sqs")
        dlq_url = client.create_queue(QueueName=resources.dlq_name("cogplane-test"))["QueueUrl"]
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield SqsJobQueue(client, QUEUE_PREFIX, dlq_arn=dlq_arn)


@dataclass
class BlobBackend:
    name: str
    blobs: BlobStore
    # True if the URL is a valid signed URL for the key (as far as this backend can tell)
    verify: Callable[[str, str], bool]


@pytest.fixture(params=BACKENDS)
def blob_backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[BlobBackend]:
    if request.param == "local":
        disk = local_disk
        store = disk.DiskBlobStore(str(tmp_path / "blobs"), "http://127.0.0.1:9", b"secret" * 6, _clock())

        def verify_local(url: str, key: str) -> bool:
            parts = urlsplit(url)
            if not url.startswith("http://127.0.0.1:9/"):
                return False
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            path_key = unquote(parts.path).split(disk.BLOB_ROUTE, 1)[-1]
            if path_key != key or "expires" not in query or "signature" not in query:
                return False
            checker = getattr(store, "verify", None)
            return checker is None or checker(path_key, int(query["expires"]), query["signature"])

        yield BlobBackend("local", store, verify_local)
        return
    from moto import mock_aws

    from cogplane.adapters.aws.s3 import S3BlobStore

    with mock_aws():
        client = _boto_client("s3", signature_version="s3v4")  # as wiring must: SigV4 presigned URLs
        client.create_bucket(Bucket=BUCKET)

        def verify_s3(url: str, key: str) -> bool:
            # moto checks no signatures: check that it is a SigV4 presigned GET of this key
            parts = urlsplit(url)
            query = parse_qs(parts.query)
            return (
                parts.scheme == "https"
                and unquote(parts.path).endswith("/" + "blob-prefix/" + key)
                and {"X-Amz-Signature", "X-Amz-Expires", "X-Amz-Credential"} <= set(query)
            )

        yield BlobBackend("aws", S3BlobStore(client, BUCKET, key_prefix="blob-prefix/"), verify_s3)


@pytest.fixture
def blobs(blob_backend: BlobBackend) -> BlobStore:
    return blob_backend.blobs
