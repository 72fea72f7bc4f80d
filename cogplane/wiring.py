"""Builds the services over one adapter set. The only place that knows which adapters exist."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from cogplane.clock import RandomIds, clock_for
from cogplane.domain import hardware as skus
from cogplane.homedir import secure_home
from cogplane.ports import BlobStore, Clock, Dispatcher, IdSource, JobQueue, Outbox, RateLimiter, StateStore
from cogplane.sealing import SecretBox, StreamTokens, key_material
from cogplane.services.accounts import AccountService
from cogplane.services.catalog import CatalogService
from cogplane.services.collections import CollectionService
from cogplane.services.deployments import DeploymentService
from cogplane.services.files import FileService
from cogplane.services.predictions import PredictionService
from cogplane.services.ratelimits import RateLimitService
from cogplane.services.safety import SafetyService
from cogplane.services.trainings import TrainingService
from cogplane.services.web import WebService
from cogplane.settings import Settings


class NoDispatcher:
    """Queues work without starting runners (a pool served by runners started elsewhere)."""

    def wake(self, pool: str) -> None:
        return None


@dataclass
class Services:
    settings: Settings
    state: StateStore
    queue: JobQueue
    blobs: BlobStore
    outbox: Outbox
    clock: Clock
    ids: IdSource
    dispatcher: Dispatcher
    hardware: dict[str, str]
    limiter: RateLimiter
    # Several adapters' writes as one transaction (the prediction and its job): the single
    # machine's Database.write; deployed (DynamoDB + SQS) each write stands alone.
    atomic: Callable[[], AbstractContextManager[Any]] = nullcontext
    # Where writes can be told not to wait (Database.nowait: WouldBlock instead), the API creates
    # in its event loop, with no worker-thread hop; None: always in a worker thread.
    nonblocking: Callable[[], AbstractContextManager[Any]] | None = None
    accounts: AccountService = field(init=False)
    ratelimits: RateLimitService = field(init=False)
    catalog: CatalogService = field(init=False)
    predictions: PredictionService = field(init=False)
    files: FileService = field(init=False)
    deployments: DeploymentService = field(init=False)
    safety: SafetyService = field(init=False)
    trainings: TrainingService = field(init=False)
    web: WebService = field(init=False)  # the web UI's use cases (functions/api/web)
    collections: CollectionService = field(init=False)
    # Per-process caches, explicit: (model, version id) -> (iterator output, file output) of
    # cogplane.services.presenters.output_kind (versions never change)
    output_kinds: dict[tuple[str, str], tuple[bool, bool]] = field(default_factory=dict, init=False)
    # Made on first use (their key material may be a Secrets Manager read): secret_box(),
    # stream_tokens(), and the web UI's cookie key (functions/api/web/session.py).
    _secret_box: SecretBox | None = field(default=None, init=False, repr=False)
    _stream_tokens: StreamTokens | None = field(default=None, init=False, repr=False)
    web_session_key: bytes | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.accounts = AccountService(self.state, self.clock)
        self.catalog = CatalogService(
            self.state,
            self.blobs,
            self.clock,
            self.hardware,
            access=self.accounts,
            image_prefixes=self.settings.image_prefixes,
            **_system_packages(self.settings),
        )
        self.files = FileService(
            self.state,
            self.blobs,
            self.clock,
            max_bytes=self.settings.max_file_bytes,
            ttl_seconds=self.settings.file_ttl_seconds,
            outbox=self.outbox,
            access=self.accounts,
        )
        self.predictions = PredictionService(
            self.state,
            self.queue,
            self.dispatcher,
            self.clock,
            self.ids,
            retention_seconds=self.settings.data_retention_seconds,
            files=self.files,
            allow_networks=self.settings.allowed_networks,
            timeout_seconds=self.settings.prediction_timeout_seconds,
            start_deadline_seconds=self.settings.start_deadline_seconds,
            access=self.accounts,
        )
        self.predictions.atomic = self.atomic
        self.ratelimits = RateLimitService(
            self.limiter,
            self.clock,
            create_per_minute=self.settings.rate_create_per_minute,
            other_per_minute=self.settings.rate_other_per_minute,
        )
        self.deployments = DeploymentService(self.state, self.catalog, self.clock, self.hardware)
        self.trainings = TrainingService(self.state, self.blobs, self.clock, self.catalog, self.predictions)
        self.predictions.secret_box = self.secret_box
        self.safety = SafetyService(
            self.state, self.blobs, self.files, self.predictions, base_url=self.settings.public_url
        )
        self.web = WebService(self.state, self.blobs, self.predictions, self.catalog)
        self.collections = CollectionService(self.state)

    def secret_box(self) -> SecretBox:
        """Seals secret inputs for the runner (cogplane.sealing); the key is read on first use."""
        if self._secret_box is None:
            self._secret_box = SecretBox(key_material(self.settings))
        return self._secret_box

    def stream_tokens(self) -> StreamTokens:
        """Makes and opens the tokens of stream URLs (cogplane.sealing.StreamTokens)."""
        if self._stream_tokens is None:
            self._stream_tokens = StreamTokens(key_material(self.settings))
        return self._stream_tokens


def _system_packages(settings: Settings) -> dict[str, Any]:
    """Where source versions' `build.system_packages` must exist: deployed runners run in the runner
    image (a fixed set), local ones on this host (dpkg)."""
    from cogplane import cogconfig

    if settings.backend == "aws":
        return {"missing_packages": cogconfig.missing_in_runner_image, "packages_where": cogconfig.RUNNER_IMAGE}
    return {"missing_packages": cogconfig.missing_on_host, "packages_where": cogconfig.HOST}


def local_secret(settings: Settings) -> bytes:
    """The install's signing secret (blob URLs), created once and kept under COGPLANE_HOME."""
    path = settings.secret_path
    secure_home(path.parent)
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        value = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value.hex())
        return value
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())


def build_local(
    settings: Settings,
    *,
    clock: Clock | None = None,
    ids: IdSource | None = None,
    dispatcher: Dispatcher | None = None,
    base_url: str | None = None,
) -> Services:
    from cogplane.adapters.local.disk import DiskBlobStore
    from cogplane.adapters.local.sqlite import (
        Database,
        SqliteJobQueue,
        SqliteOutbox,
        SqliteRateLimiter,
        SqliteStateStore,
    )

    clock = clock or clock_for(settings)
    secure_home(settings.home)
    db = Database(str(settings.db_path))
    blobs = DiskBlobStore(
        str(settings.blob_root),
        base_url or settings.public_url or "http://127.0.0.1:8000",
        local_secret(settings),
        clock,
    )
    return Services(
        settings=settings,
        state=SqliteStateStore(db, clock),
        queue=SqliteJobQueue(db, clock),
        blobs=blobs,
        outbox=SqliteOutbox(db),
        clock=clock,
        ids=ids or RandomIds(),
        dispatcher=dispatcher or NoDispatcher(),
        hardware=skus.local(),
        limiter=SqliteRateLimiter.own_file(settings.ratelimit_db_path),
        atomic=db.write,
        nonblocking=db.nowait,
    )


def build_aws(
    settings: Settings,
    *,
    clients: dict[str, Any] | None = None,
    clock: Clock | None = None,
    dispatcher: Dispatcher | None = None,
) -> Services:
    """Adapters over botocore clients built once per process (or given, for tests)."""
    from cogplane.adapters.aws.dynamodb import DynamoOutbox, DynamoRateLimiter, DynamoStateStore
    from cogplane.adapters.aws.s3 import S3BlobStore
    from cogplane.adapters.aws.sqs import SqsJobQueue

    if not (settings.table_name and settings.bucket and settings.queue_prefix):
        raise RuntimeError("COGPLANE_TABLE_NAME, COGPLANE_BUCKET and COGPLANE_QUEUE_PREFIX must be set")
    clients = clients or _aws_clients()
    clock = clock or clock_for(settings)
    state = DynamoStateStore(clients["dynamodb"], settings.table_name, clock)
    queue = SqsJobQueue(
        clients["sqs"], settings.queue_prefix, dlq_arn=settings.dlq_arn, wait_seconds=settings.queue_wait_seconds
    )
    if dispatcher is None and settings.ecs_dispatch:
        from cogplane.adapters.aws.ecs import EcsConfig, EcsDispatcher, StatePoolHardware

        ecs = clients.get("ecs") or _aws_client("ecs")
        pools = StatePoolHardware(state)
        dispatcher = EcsDispatcher.from_config(
            ecs, EcsConfig.from_json(settings.ecs_dispatch), hardware_for=pools, image_for=pools.image, queue=queue
        )
    return Services(
        settings=settings,
        state=state,
        queue=queue,
        blobs=_signed_blobs(settings, S3BlobStore(clients["s3"], settings.bucket), clock),
        outbox=DynamoOutbox(clients["dynamodb"], settings.table_name),
        clock=clock,
        ids=RandomIds(),
        dispatcher=dispatcher or NoDispatcher(),
        limiter=DynamoRateLimiter(clients["dynamodb"], settings.table_name),
        hardware=skus.deployed(),
    )


def _signed_blobs(settings: Settings, s3: Any, clock: Clock) -> Any:
    """Download URLs the platform signs (SigningKeys) and the stream function serves, when the
    deployment has a URL to serve them from (cogplane.adapters.aws.signed); else S3 presigns."""
    if not (settings.secrets_key or settings.signing_secret_arn):
        return s3
    base = settings.stream_url or settings.public_url  # empty in the stream function: per request
    from cogplane.adapters.aws.signed import SignedUrlBlobStore
    from cogplane.sealing import key_material

    return SignedUrlBlobStore(s3, base_url=base, secret=lambda: key_material(settings), clock=clock)


SQS_READ_TIMEOUT_S = 20 + 10  # the longest SQS long poll (20 s) and a margin


def _aws_client(name: str) -> Any:
    """Made on first use (the API's ECS dispatcher: only prediction creates wake a pool)."""
    from botocore.config import Config

    from cogplane.adapters.aws.clients import LazyClient

    return LazyClient(
        name, config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 4, "mode": "standard"})
    )


def _aws_clients() -> dict[str, Any]:
    """botocore clients (cogplane.adapters.aws.clients: boto3 itself is never imported). DynamoDB's
    is made now (every request reads the table); SQS's and S3's on first use (enqueues, files)."""
    from botocore.config import Config

    from cogplane.adapters.aws.clients import LazyClient, client

    config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 4, "mode": "standard"})
    # presigned output URLs need SigV4 (botocore would otherwise presign with SigV2)
    s3_config = config.merge(Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
    # a runner's claim long-polls up to 20 s (COGPLANE_QUEUE_WAIT_SECONDS): the read must outlast it,
    # or an idle runner's poll times out, is retried and finally kills the runner
    sqs_config = config.merge(Config(read_timeout=SQS_READ_TIMEOUT_S))
    return {
        "dynamodb": client("dynamodb", config=config),
        "sqs": LazyClient("sqs", config=sqs_config),
        "s3": LazyClient("s3", config=s3_config),
    }


def build(settings: Settings, **kwargs: Any) -> Services:
    if settings.backend == "aws":
        return build_aws(settings, **kwargs)
    return build_local(settings, **kwargs)
