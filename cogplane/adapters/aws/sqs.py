"""SQS job queue: one standard queue per pool, created on demand (CreateQueue is idempotent).

A claim is a ReceiveMessage whose visibility timeout is the lease; ack deletes the message,
release changes its visibility. Delivery is at least once and roughly oldest first: the state
store's conditional starting→processing write makes each prediction run once.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from cogplane import resources
from cogplane.domain.entities import Job

T = TypeVar("T")

_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
# a receipt whose lease ran out (someone else may hold the job now), or a message already gone
_STALE_RECEIPT = {
    "ReceiptHandleIsInvalid",
    "InvalidParameterValue",
    "AWS.SimpleQueueService.MessageNotInflight",
    "MessageNotInflight",
}


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _seconds(value: float) -> int:
    """SQS takes whole seconds (0..12 h): round a lease or delay up."""
    return max(0, min(resources.MAX_VISIBILITY_TIMEOUT_S, math.ceil(value)))


class SqsJobQueue:
    def __init__(self, client: Any, queue_prefix: str, *, dlq_arn: str | None = None, wait_seconds: int = 0) -> None:
        self.client = client
        # SQS long polling: an empty claim waits up to this long for a job (0..20 s) instead of
        # returning at once, so an idle runner sends one ReceiveMessage per wait, not four a second.
        self.wait_seconds = max(0, min(int(wait_seconds), 20))
        self.queue_prefix = queue_prefix
        self.dlq_arn = dlq_arn
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- queues -----------------------------------------------------------------------------
    def queue_name(self, pool: str) -> str:
        return resources.pool_queue_name(self.queue_prefix, pool)

    def _url(self, pool: str) -> str:
        url = self._urls.get(pool)
        if url is not None:
            return url
        name = self.queue_name(pool)
        try:
            url = self.client.create_queue(QueueName=name, Attributes=resources.pool_queue_attributes(self.dlq_arn))[
                "QueueUrl"
            ]
        except ClientError as exc:
            if _code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = self.client.get_queue_url(QueueName=name)["QueueUrl"]  # made with other attributes
        with self._lock:
            self._urls[pool] = url
        return url

    def _on_queue(self, pool: str, call: Callable[[str], T]) -> T:
        """Run `call(queue_url)`; if the cached queue is gone, create it again and retry once."""
        try:
            return call(self._url(pool))
        except ClientError as exc:
            if _code(exc) not in _MISSING_QUEUE:
                raise
            with self._lock:
                self._urls.pop(pool, None)
            return call(self._url(pool))

    # --- JobQueue -----------------------------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        message = {"prediction_id": job.prediction_id, "pool": job.pool, "enqueued_at": job.enqueued_at}
        if job.sealed:
            message["sealed"] = job.sealed
        body = json.dumps(message, separators=(",", ":"))
        self._on_queue(job.pool, lambda url: self.client.send_message(QueueUrl=url, MessageBody=body))

    def claim(self, pool: str, *, lease_seconds: float = 60.0) -> Job | None:
        resp = self._on_queue(
            pool,
            lambda url: self.client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=1,
                VisibilityTimeout=_seconds(lease_seconds),
                WaitTimeSeconds=self.wait_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ),
        )
        messages = resp.get("Messages") or []
        if not messages:
            return None
        message = messages[0]
        job = Job.from_dict(json.loads(message["Body"]))
        job.pool = pool
        job.receipt = message["ReceiptHandle"]
        job.attempts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        return job

    def ack(self, job: Job) -> None:
        if not job.receipt:
            return
        try:
            self.client.delete_message(QueueUrl=self._url(job.pool), ReceiptHandle=job.receipt)
        except ClientError as exc:
            if _code(exc) not in _STALE_RECEIPT | _MISSING_QUEUE:
                raise  # a stale receipt: the lease ran out and someone else has the job

    def release(self, job: Job, *, delay: float = 0.0) -> None:
        if not job.receipt:
            return
        try:
            self.client.change_message_visibility(
                QueueUrl=self._url(job.pool), ReceiptHandle=job.receipt, VisibilityTimeout=_seconds(delay)
            )
        except ClientError as exc:
            if _code(exc) not in _STALE_RECEIPT | _MISSING_QUEUE:
                raise

    def depth(self, pool: str) -> int:
        resp = self._on_queue(
            pool,
            lambda url: self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]),
        )
        return int(resp.get("Attributes", {}).get("ApproximateNumberOfMessages", "0"))
