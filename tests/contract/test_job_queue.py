"""JobQueue contract: run on SQLite and on SQS (moto)."""

from __future__ import annotations

import time

from cogplane.domain.entities import Job


def job(n: int, pool: str = "pool-a") -> Job:
    return Job(prediction_id=f"p{n}", pool=pool, enqueued_at=f"2026-01-01T00:00:{n:02d}.000000Z")


def test_claim_returns_the_oldest_job(job_queue):
    for n in (1, 2, 3):
        job_queue.enqueue(job(n))
    claimed = [job_queue.claim("pool-a") for _ in range(3)]
    assert [j.prediction_id for j in claimed] == ["p1", "p2", "p3"]
    first = claimed[0]
    assert (first.pool, first.enqueued_at) == ("pool-a", job(1).enqueued_at)
    assert first.receipt
    assert first.attempts == 1
    assert job_queue.claim("pool-a") is None


def test_empty_pool_has_nothing_to_claim(job_queue):
    assert job_queue.claim("never-used") is None
    assert job_queue.depth("never-used") == 0


def test_claimed_job_is_not_claimed_again_and_ack_removes_it(job_queue):
    job_queue.enqueue(job(1))
    claimed = job_queue.claim("pool-a", lease_seconds=60)
    assert claimed is not None
    assert job_queue.claim("pool-a", lease_seconds=60) is None
    assert job_queue.depth("pool-a") == 0
    job_queue.ack(claimed)
    assert job_queue.claim("pool-a") is None
    assert job_queue.depth("pool-a") == 0


def test_release_makes_the_job_claimable_again(job_queue):
    job_queue.enqueue(job(1))
    first = job_queue.claim("pool-a")
    job_queue.release(first)
    assert job_queue.depth("pool-a") == 1
    second = job_queue.claim("pool-a")
    assert second is not None
    assert second.prediction_id == "p1"
    assert second.attempts > first.attempts
    job_queue.release(second, delay=60)
    assert job_queue.claim("pool-a") is None
    assert job_queue.depth("pool-a") == 0


def test_lease_expiry_makes_the_job_claimable_again(job_queue):
    job_queue.enqueue(job(1))
    first = job_queue.claim("pool-a", lease_seconds=1)
    assert job_queue.claim("pool-a", lease_seconds=1) is None
    time.sleep(1.3)
    second = job_queue.claim("pool-a", lease_seconds=60)
    assert second is not None
    assert second.prediction_id == "p1"
    job_queue.ack(second)
    job_queue.ack(first)  # a stale receipt is harmless
    assert job_queue.claim("pool-a") is None


def test_depth_counts_waiting_jobs(job_queue):
    for n in range(4):
        job_queue.enqueue(job(n))
    assert job_queue.depth("pool-a") == 4
    job_queue.claim("pool-a")
    assert job_queue.depth("pool-a") == 3


def test_pools_are_independent(job_queue):
    weird = "version:alice/m@" + "f" * 64  # SQS names allow fewer characters than pool names
    job_queue.enqueue(job(1, pool="pool-a"))
    job_queue.enqueue(job(2, pool=weird))
    job_queue.enqueue(job(3, pool="pool-b"))
    assert job_queue.depth("pool-a") == 1
    assert job_queue.depth(weird) == 1
    got = job_queue.claim(weird)
    assert (got.prediction_id, got.pool) == ("p2", weird)
    assert job_queue.claim(weird) is None
    assert job_queue.claim("pool-b").prediction_id == "p3"
    assert job_queue.claim("pool-a").prediction_id == "p1"


def test_a_jobs_sealed_secret_inputs_travel_with_it(job_queue):
    job_queue.enqueue(Job(prediction_id="p1", pool="pool-a", enqueued_at=job(1).enqueued_at, sealed="v1.abc"))
    job_queue.enqueue(job(2))
    first, second = job_queue.claim("pool-a"), job_queue.claim("pool-a")
    assert (first.prediction_id, first.sealed) == ("p1", "v1.abc")
    assert (second.prediction_id, second.sealed) == ("p2", None)
