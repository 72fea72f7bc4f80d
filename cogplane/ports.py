"""Ports: the small interfaces the services need. Adapters in cogplane/adapters implement them.

Two adapter sets implement every port: `adapters/local` (SQLite + disk) and `adapters/aws`
(DynamoDB + SQS + S3). tests/contract runs one suite per port against both.

Conventions every adapter honours:
- Timestamps are strings in cogplane.domain.timefmt's fixed-width format (they sort as text).
- Every state change is conditional: a terminal prediction never changes again
  (`update_prediction` checks `expect_status`), a model/account/prediction is created once.
- Lists are cursor-paged and cost what the page costs: `cursor` is opaque, `Page.next_cursor`
  is None on the last page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cogplane.domain.entities import (
    Account,
    ApiToken,
    Deployment,
    File,
    Job,
    Membership,
    Model,
    OutboxEvent,
    Page,
    Prediction,
    Runner,
    UsageRecord,
    Version,
)
from cogplane.domain.errors import PayloadTooLarge
from cogplane.domain.ratelimit import RateDecision


class WouldBlock(Exception):  # noqa: N818 - a condition, like BlockingIOError, not a failure
    """A write in a `Services.nonblocking()` block would have waited (for a lock): nothing was
    written; do it again where waiting is allowed (a worker thread)."""


@runtime_checkable
class Clock(Protocol):
    def now(self) -> str:
        """The current time as a timefmt string."""

    def monotonic(self) -> float:
        """Seconds, for measuring durations."""


class StateStore(Protocol):
    # --- accounts and tokens ------------------------------------------------------------
    def create_account(self, account: Account) -> bool:
        """Create the account; False (and no change) if the username exists."""

    def get_account(self, username: str) -> Account | None: ...

    def update_account(self, account: Account) -> None:
        """Replace the stored account. Raises NotFound if it does not exist."""

    def list_accounts(self, *, cursor: str | None = None, limit: int = 100) -> Page[Account]:
        """Every account (users and organizations), by username."""

    def put_token(self, token: ApiToken) -> bool:
        """Store a token record (its hash, never the token itself); False (and no change) if a
        token with this hash exists."""

    def get_token(self, token_hash: str) -> ApiToken | None: ...

    def list_tokens(self, account: str) -> list[ApiToken]:
        """The account's tokens, oldest first."""

    def touch_token(self, token_hash: str, used_at: str) -> None:
        """Set last_used_at = used_at unless it is already as late (never moves back). No-op if
        the token is gone."""

    def delete_token(self, token_id: str) -> ApiToken | None:
        """Revoke: remove the token with this id for good; returns it, or None if there was none."""

    # --- organization members -----------------------------------------------------------
    def put_member(self, membership: Membership) -> None:
        """Add the user to the org, or change their role."""

    def get_member(self, org: str, username: str) -> Membership | None: ...

    def delete_member(self, org: str, username: str) -> bool:
        """False if the user was not a member."""

    def list_members(self, org: str) -> list[Membership]:
        """By username."""

    def list_memberships(self, username: str) -> list[Membership]:
        """The orgs the user belongs to, by org name."""

    # --- usage --------------------------------------------------------------------------
    def list_usage(self, account: str, *, since: str, until: str) -> list[UsageRecord]:
        """The account's usage rows with since <= day <= until (YYYY-MM-DD), by day then hardware.
        Rows are written by update_prediction (cogplane.domain.usage.billable), in the same
        transaction as the change that makes a prediction terminal."""

    # --- models -------------------------------------------------------------------------
    def create_model(self, model: Model) -> None:
        """Raises Conflict if owner/name exists."""

    def get_model(self, owner: str, name: str) -> Model | None: ...

    def update_model(self, model: Model) -> None:
        """Replace the stored model. Raises NotFound if it does not exist."""

    def delete_model(self, owner: str, name: str) -> None:
        """Raises NotFound if it does not exist."""

    def list_models(
        self,
        *,
        sort_by: str = "latest_version_created_at",
        descending: bool = True,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Model]:
        """Public models. sort_by is `model_created_at` or `latest_version_created_at`; with the
        latter, models without a version are not listed."""

    def list_models_of(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[Model]:
        """Every model of one owner (public and private), by name."""

    # --- versions -----------------------------------------------------------------------
    def put_version(self, version: Version) -> tuple[Version, bool]:
        """Store the version unless (owner, name, id) exists. Returns (stored, created).
        Does not touch the model; the service updates `latest_version_*`."""

    def get_version(self, owner: str, name: str, version_id: str) -> Version | None: ...

    def find_versions(self, version_id: str) -> list[Version]:
        """Every model version with this id (a bare id is global; identical bundles pushed to
        two models share an id)."""

    def list_versions(self, owner: str, name: str, *, cursor: str | None = None, limit: int = 100) -> Page[Version]:
        """Newest first."""

    def delete_version(self, owner: str, name: str, version_id: str) -> None:
        """Raises NotFound if it does not exist."""

    # --- predictions --------------------------------------------------------------------
    def create_prediction(self, prediction: Prediction, outbox: Sequence[OutboxEvent] = ()) -> None:
        """Raises Conflict if the id exists. Outbox events — the given ones and those
        `cogplane.domain.lifecycle.derive` yields — are written in the same transaction, and so
        is one more run on the model's `run_count` (if the model `prediction.model` exists)."""

    def get_prediction(self, prediction_id: str) -> Prediction | None: ...

    def update_prediction(
        self,
        prediction_id: str,
        changes: dict[str, Any],
        *,
        expect_status: Iterable[str] | None = None,
        outbox: Sequence[OutboxEvent] = (),
    ) -> Prediction:
        """Apply `changes` only if the stored status is in `expect_status` (default: any
        non-terminal status), together with the outbox events (given, plus those
        `cogplane.domain.lifecycle.derive(before, after, now)` yields) and the usage
        `cogplane.domain.usage.billable(before, after)` adds, atomically.
        Returns the updated prediction. Raises NotFound if missing, Conflict if the
        condition fails (e.g. the prediction is already terminal)."""

    def list_predictions(
        self,
        owner: str,
        *,
        created_after: str | None = None,
        created_before: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        kind: str = "prediction",
    ) -> Page[Prediction]:
        """The owner's predictions of one kind (`prediction` | `training`: each has its own
        index, so the two lists page separately), newest first."""

    def delete_prediction(self, prediction_id: str) -> None:
        """Remove it for good (web predictions deleted by their owner). Idempotent."""

    # --- deployments --------------------------------------------------------------------
    def create_deployment(self, deployment: Deployment) -> None:
        """Raises Conflict if owner/name exists."""

    def get_deployment(self, owner: str, name: str) -> Deployment | None: ...

    def update_deployment(self, deployment: Deployment, *, expect_release: int) -> None:
        """Replace it only if the stored release_number == expect_release, else Conflict."""

    def delete_deployment(self, owner: str, name: str) -> None: ...

    def list_deployments(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[Deployment]: ...

    def list_warm_deployments(self, limit: int = 100) -> list[Deployment]:
        """Deployments of every owner with min_instances > 0 (at most `limit`, by owner/name), for
        the expirer's keep-warm pass. An index of just those (never a scan of all deployments)."""

    # --- files --------------------------------------------------------------------------
    def create_file(self, file: File) -> None:
        """Raises Conflict if the id exists."""

    def get_file(self, file_id: str) -> File | None: ...

    def list_files(self, owner: str, *, cursor: str | None = None, limit: int = 100) -> Page[File]:
        """The owner's files, newest first."""

    def delete_file(self, file_id: str) -> None:
        """Idempotent."""

    # --- runners ------------------------------------------------------------------------
    def put_runner(self, runner: Runner) -> None:
        """Create or replace the runner's record (its heartbeat)."""

    def get_runner(self, runner_id: str) -> Runner | None: ...

    def list_runners(self, pool: str | None = None) -> list[Runner]:
        """Every live runner record (of one pool). Costs what the runners cost, not the data."""

    def delete_runner(self, runner_id: str) -> None:
        """Idempotent."""


class JobQueue(Protocol):
    """At-least-once delivery per pool; the state store's conditional starting→processing
    write makes each prediction run once."""

    def enqueue(self, job: Job) -> None: ...

    def claim(self, pool: str, *, lease_seconds: float = 60.0) -> Job | None:
        """Take the oldest visible job of the pool, or None. A claimed job is invisible to
        other claimers until it is acked, released, or the lease runs out."""

    def ack(self, job: Job) -> None:
        """The job is done: remove it for good."""

    def release(self, job: Job, *, delay: float = 0.0) -> None:
        """Make the job visible again after `delay` seconds. While the claimer still holds it,
        this is also how a lease is extended (SQS ChangeMessageVisibility)."""

    def depth(self, pool: str) -> int:
        """Jobs of the pool waiting (visible), approximately for SQS."""


@dataclass
class BlobInfo:
    key: str
    size: int
    content_type: str | None


@dataclass(frozen=True)
class BlobDigest:
    """A blob's bytes as read once, start to end, without holding them (`BlobStore.digest`)."""

    size: int
    sha256: str
    md5: str

    @classmethod
    def of(cls, pieces: Iterable[bytes], *, max_bytes: int, key: str) -> BlobDigest:
        """The digest of a blob read as `pieces`; PayloadTooLarge as soon as they pass max_bytes."""
        sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        for piece in pieces:
            size += len(piece)
            if size > max_bytes:
                raise PayloadTooLarge(f"Blob {key} is larger than {max_bytes} bytes.")
            sha256.update(piece)
            md5.update(piece)
        return cls(size=size, sha256=sha256.hexdigest(), md5=md5.hexdigest())


class BlobStore(Protocol):
    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None: ...

    def get(self, key: str) -> bytes:
        """Raises NotFound if absent."""

    def head(self, key: str) -> BlobInfo | None: ...

    def delete(self, key: str) -> None:
        """Idempotent."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under prefix; returns how many."""

    def signed_url(self, key: str, *, expires_in: int = 3600, filename: str | None = None) -> str:
        """An absolute URL that serves the blob without other auth until it expires."""

    def upload_url(self, key: str, *, max_bytes: int, expires_in: int = 3600) -> dict[str, Any]:
        """Where a client uploads the blob itself, without other auth, until it expires, at most
        max_bytes: `{"url", "method": "PUT"|"POST", "fields"}` (POST: a multipart form of the
        fields, then the bytes in a part named `file`: an S3 presigned POST)."""

    def digest(self, key: str, *, max_bytes: int) -> BlobDigest:
        """Size and checksums of a blob, read in pieces (never all in memory: an upload may be
        512 MiB, and a Lambda function has 1 GiB). NotFound if absent; PayloadTooLarge as soon as
        more than max_bytes have been read."""

    def copy(self, source: str, dest: str, *, content_type: str | None = None) -> None:
        """Make dest a copy of source, made by the store itself (S3: CopyObject; the bytes never
        pass through this process), with `content_type`. NotFound if source is absent.
        To trust a client's upload, copy it where only the platform writes and `digest` the copy:
        its uploader may send again to its URL at any moment (and an ETag is only an MD5)."""


class Outbox(Protocol):
    """Events written atomically with state changes (StateStore's `outbox=`), delivered later."""

    def add(self, events: Sequence[OutboxEvent]) -> None:
        """Schedule events that belong to no prediction change (e.g. a file's expiry)."""

    def due(self, now: str, *, kind: str, limit: int = 100) -> list[OutboxEvent]:
        """Events of this kind (`webhook` | `timer`) with due_at <= now, oldest first."""

    def complete(self, event_id: str) -> None:
        """Delivered (or given up): remove it."""

    def reschedule(self, event_id: str, *, due_at: str, attempts: int) -> None: ...


class RateLimiter(Protocol):
    """Token buckets shared by every API process (cogplane.domain.ratelimit does the arithmetic;
    the adapter makes each take atomic)."""

    def take(self, key: str, *, per_minute: int, now: float) -> RateDecision:
        """Take one token from bucket `key` at unix time `now` (or be refused)."""


class IdSource(Protocol):
    def prediction_id(self) -> str: ...


class Dispatcher(Protocol):
    """Makes sure a pool with queued work has runners (cold boots), up to its max."""

    def wake(self, pool: str) -> None:
        """Called after a job is enqueued for `pool`. Must return quickly."""
