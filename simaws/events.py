"""What invokes functions besides API Gateway: EventBridge schedules and the DynamoDB stream event
source mapping (Lambda's poller: batch size, batching window, filter criteria, retries)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from simaws.deploy import Schedule, StreamMapping
from simaws.lambdas import InvokeError, LambdaFunction

log = logging.getLogger("simaws.events")


def scheduled_event(rule_arn: str, region: str, account: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def matches(pattern: Any, value: Any) -> bool:
    """Lambda filter criteria (EventBridge patterns): the subset the stack uses (exact values,
    `exists`, `prefix`, nested objects)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(matches(p, value.get(k, _MISSING)) for k, p in pattern.items())
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict):
                if "exists" in option and (value is not _MISSING) == bool(option["exists"]):
                    return True
                if "prefix" in option and isinstance(value, str) and value.startswith(option["prefix"]):
                    return True
            elif value is not _MISSING and value == option:
                return True
        return False
    return value == pattern


_MISSING = object()


class Scheduler:
    def __init__(
        self,
        schedules: list[Schedule],
        functions: dict[str, LambdaFunction],
        *,
        region: str,
        account: str,
        stack_name: str,
    ):
        self.schedules = schedules
        self.functions = functions
        self.region = region
        self.account = account
        self.stack_name = stack_name
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.runs: dict[str, int] = {}

    def fire(self, schedule: Schedule) -> None:
        arn = f"arn:aws:events:{self.region}:{self.account}:rule/{self.stack_name}-{schedule.logical_id}"
        for target in schedule.targets:
            fn = self.functions.get(target)
            if fn is None:
                continue
            try:
                result = fn.invoke(scheduled_event(arn, self.region, self.account), wait_for_slot_s=5)
                if result.error:
                    log.warning(
                        "%s (schedule) raised %s: %s",
                        target,
                        result.error.get("errorType"),
                        result.error.get("errorMessage"),
                    )
            except InvokeError as exc:
                log.warning("%s (schedule): %s", target, exc)
            self.runs[target] = self.runs.get(target, 0) + 1

    def start(self, *, first_after_s: float | None = None) -> Scheduler:
        for schedule in self.schedules:
            thread = threading.Thread(
                target=self._loop,
                args=(schedule, first_after_s),
                daemon=True,
                name=f"simaws-schedule-{schedule.logical_id}",
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, schedule: Schedule, first_after_s: float | None) -> None:
        wait = schedule.rate_s if first_after_s is None else first_after_s
        while not self._stop.wait(wait):
            self.fire(schedule)
            wait = schedule.rate_s

    def stop(self) -> None:
        self._stop.set()


class StreamPoller:
    """One DynamoDB stream event source mapping."""

    def __init__(
        self,
        mapping: StreamMapping,
        function: LambdaFunction,
        client: Any,
        *,
        region: str,
        account: str,
        poll_s: float = 0.5,
        retry_attempts: int = 3,
    ):
        self.mapping = mapping
        self.function = function
        self.client = client  # dynamodbstreams
        self.region = region
        self.account = account
        self.poll_s = poll_s
        self.retry_attempts = retry_attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.records_seen = 0

    def start(self) -> StreamPoller:
        streams = self.client.list_streams(TableName=self.mapping.table)["Streams"]
        self.stream_arn = streams[0]["StreamArn"]
        shard = self.client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]
        self.iterator = self.client.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType=self.mapping.starting_position
        )["ShardIterator"]
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"simaws-stream-{self.mapping.logical_id}")
        self._thread.start()
        return self

    def _records(self) -> list[dict[str, Any]]:
        old = self.iterator
        resp = self.client.get_records(ShardIterator=old, Limit=self.mapping.batch_size)
        self.iterator = resp["NextShardIterator"]
        _forget_iterator(old, self.region, self.account)  # moto keeps every iterator forever otherwise
        records = resp.get("Records", [])
        self.records_seen += len(records)
        for record in records:
            record["eventSourceARN"] = self.stream_arn
            record.setdefault("eventVersion", "1.1")
        filters = self.mapping.filters
        return [r for r in records if not filters or any(matches(f, r) for f in filters)]

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                batch = self._records()
                if not batch:
                    continue
                deadline = time.monotonic() + self.mapping.window_s
                while len(batch) < self.mapping.batch_size and time.monotonic() < deadline:
                    if self._stop.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                        break
                    batch += self._records()
                self._deliver(batch[: self.mapping.batch_size])
            except Exception:
                log.exception("stream poller %s failed", self.mapping.logical_id)

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        event = json.loads(json.dumps({"Records": records}, default=str))
        for attempt in range(self.retry_attempts + 1):
            try:
                result = self.function.invoke(event, wait_for_slot_s=30)
                if result.error is None:
                    self.batches += 1
                    return
                log.warning("%s raised on a stream batch: %s", self.function.config.name, result.error)
            except InvokeError as exc:
                log.warning("%s: stream batch: %s", self.function.config.name, exc)
            time.sleep(min(2**attempt, 10))
        log.error(
            "%s: dropped a stream batch of %d records after %d retries",
            self.function.config.name,
            len(records),
            self.retry_attempts,
        )

    def stop(self) -> None:
        self._stop.set()


def _forget_iterator(arn: str, region: str, account: str) -> None:
    try:
        from moto.dynamodbstreams.models import dynamodbstreams_backends

        dynamodbstreams_backends[account][region].shard_iterators.pop(arn, None)
    except (ImportError, KeyError):
        pass
