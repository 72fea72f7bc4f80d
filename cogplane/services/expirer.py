"""The expirer: acts on timers when they are due (read from the outbox's due-time index, never
a scan) and on runners that stopped heartbeating.

- `remove`: an API prediction's input, output, logs and files are deleted one hour after
  creation (`data_removed: true`, output null). Not yet terminal: checked again later.
- `deadline` (Cancel-After): not started → `aborted`; running → `canceled` (the runner stops it).
- `timeout`: still running past the install's/deployment's timeout → `failed`.
- `start` (the start deadline, `start_by`): still `starting` then → `failed` with the reason the
  dispatcher gives (`start_problem(pool)`: ECS's task state or stopped reason; the local runner's
  exit), unless a runner of its pool is alive (booting, or busy with earlier work): checked again.
- lost runners: no heartbeat for `lost_after` seconds → their in-flight predictions `failed`.
- reconcile (only with a dispatcher that has `keep_warm`, i.e. the deployed EcsDispatcher; the
  local ProcessDispatcher keeps its own pools): deployments' `min_instances` are kept warm, warm
  runners beyond them (an old release's, a deleted deployment's) are stopped, and
  pools with queued work but no runner (a lost wake) are woken again. No table scans: warm
  deployments come from their sparse index (`list_warm_deployments`), and the pools checked
  for lost wakes are a bounded set: pools of live runner records, pools of runners this pass
  found lost, warm pools, and the dispatcher's `recent_pools()` (ECS: tasks stopped in the last
  hour, which ECS keeps listing) — one queue-depth call per pool, at most `max_pools`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cogplane.domain import transitions
from cogplane.domain.errors import Conflict, NotFound
from cogplane.domain.lifecycle import TIMER
from cogplane.domain.pools import DEPLOYMENT_PREFIX
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import add_seconds, seconds_between
from cogplane.logs import prediction_context
from cogplane.services.presenters import blob_prefix

if TYPE_CHECKING:
    from cogplane.domain.entities import OutboxEvent
    from cogplane.wiring import Services

log = logging.getLogger("cogplane.expirer")

RECHECK_SECONDS = 300.0
START_RECHECK_SECONDS = 60.0


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class Expirer:
    def __init__(self, services: Services, *, lost_after: float = 30.0, max_pools: int = 100) -> None:
        self.services = services
        self.lost_after = lost_after  # 6 missed heartbeats (runners beat every 5 s)
        self.max_pools = max_pools  # pools checked for lost wakes per run (one depth call each)
        self.lost_pools: set[str] = set()
        # pools always checked for a lost wake: the platform's models' (the safety checker's), whose
        # work is queued by a runner, which has no dispatcher on the deployed shape
        self.watched_pools: set[str] = set()

    def run_once(self, limit: int = 500) -> dict[str, int]:
        counts = {"remove": 0, "deadline": 0, "timeout": 0, "file_expiry": 0, "start": 0, "lost": 0}
        now = self.services.clock.now()
        for event in self.services.outbox.due(now, kind=TIMER, limit=limit):
            timer = event.payload.get("timer", "")
            try:
                with prediction_context(event.prediction_id):
                    handled = getattr(self, f"_{timer}")(event, now)
            except Exception:  # noqa: BLE001 - keep going; the event stays due and is retried
                log.exception("timer %s for %s failed", timer, event.prediction_id)
                continue
            if handled is not None:
                counts[timer] = counts.get(timer, 0) + int(handled)
        counts["lost"] = self.lost_runners(now)
        counts.update(self.reconcile())
        return counts

    # --- reconcile: warm pools and lost wakes ------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Keep deployments' min_instances warm and wake pools whose queued work has no runner.
        A no-op for dispatchers without `keep_warm` (they manage their pools themselves)."""
        dispatcher = self.services.dispatcher
        keep_warm = getattr(dispatcher, "keep_warm", None)
        lost_pools, self.lost_pools = self.lost_pools, set()
        if keep_warm is None:
            return {}
        from cogplane.services.deployments import deployment_pool

        counts = {"warm_started": 0, "woken": 0, "warm_retired": 0}
        warm: dict[str, int] = {}
        deployments = self.services.state.list_warm_deployments(limit=self.max_pools)
        for deployment in deployments:
            pool = deployment_pool(deployment)
            warm[pool] = min(deployment.min_instances, deployment.max_instances)
            try:
                started = keep_warm(pool, warm[pool])
            except Exception:  # noqa: BLE001 - one pool's failure must not stop the others
                log.exception("could not keep pool %s warm", pool)
                continue
            counts["warm_started"] += len(started or [])
        runner_pools = {r.pool for r in self.services.state.list_runners()}
        if len(deployments) < self.max_pools:  # the whole warm set is known: retire what is not in it
            counts["warm_retired"] = self._retire_warm(runner_pools | set(warm), warm)
        candidates = runner_pools | lost_pools | set(warm) | self.watched_pools
        recent = getattr(dispatcher, "recent_pools", None)
        if recent is not None:
            try:
                candidates |= set(recent(limit=self.max_pools))
            except Exception:  # noqa: BLE001
                log.exception("could not list recently active pools")
        for pool in sorted(candidates)[: self.max_pools]:
            try:
                if self.services.queue.depth(pool) > 0:
                    # wake() starts a runner when the pool has none (a lost wake) and adds one
                    # while the backlog outgrows them; with enough runners it does nothing
                    dispatcher.wake(pool)
                    counts["woken"] += 1
            except Exception:  # noqa: BLE001
                log.exception("could not check pool %s", pool)
        return counts

    def _retire_warm(self, pools: set[str], warm: dict[str, int]) -> int:
        """Warm runners of deployment pools beyond their min_instances (none for a pool that is no
        longer a warm deployment's: an old release, a deleted deployment) are stopped. The pools
        looked at are those with a runner record and the warm ones (no scan of the cluster)."""
        retire = getattr(self.services.dispatcher, "retire_warm", None)
        if retire is None:
            return 0
        retired = 0
        for pool in sorted(p for p in pools if p.startswith(DEPLOYMENT_PREFIX))[: self.max_pools]:
            try:
                retired += len(retire(pool, warm.get(pool, 0)) or [])
            except Exception:  # noqa: BLE001 - one pool's failure must not stop the others
                log.exception("could not retire the warm runners of pool %s", pool)
        return retired

    def _update(self, prediction_id: str, transition: transitions.Transition) -> bool:
        try:
            transition.apply(self.services.state, prediction_id)
            return True
        except (Conflict, NotFound):
            return False

    def _remove(self, event: OutboxEvent, now: str) -> bool | None:
        services = self.services
        prediction = services.state.get_prediction(event.prediction_id)
        if prediction is None or prediction.data_removed:
            services.outbox.complete(event.id)
            return False
        if prediction.status not in TERMINAL:
            services.outbox.reschedule(event.id, due_at=add_seconds(now, RECHECK_SECONDS), attempts=event.attempts + 1)
            return None
        services.blobs.delete_prefix(blob_prefix(prediction))
        done = self._update(prediction.id, transitions.remove_data())
        services.outbox.complete(event.id)
        return done

    def _file_expiry(self, event: OutboxEvent, now: str) -> bool:
        """A files-API upload is deleted (bytes and record) when it expires, 24 h after upload."""
        services = self.services
        record = services.state.get_file(event.payload.get("file_id", ""))
        services.outbox.complete(event.id)
        if record is None or record.expires_at > now:
            return False
        services.blobs.delete(record.blob_key)
        services.state.delete_file(record.id)
        return True

    def _deadline(self, event: OutboxEvent, now: str) -> bool:
        services = self.services
        prediction = services.state.get_prediction(event.prediction_id)
        services.outbox.complete(event.id)
        if prediction is None or prediction.status in TERMINAL:
            return False
        if prediction.status == Status.STARTING:
            return self._update(prediction.id, transitions.abort(now=now))
        return self._update(prediction.id, transitions.cancel(prediction, now=now))

    def _start(self, event: OutboxEvent, now: str) -> bool | None:
        services = self.services
        prediction = services.state.get_prediction(event.prediction_id)
        if prediction is None or prediction.status != Status.STARTING:
            services.outbox.complete(event.id)
            return False
        live = any(
            r.pool == prediction.pool and r.heartbeat_at and seconds_between(r.heartbeat_at, now) < self.lost_after
            for r in services.state.list_runners()
        )
        reason: str | None = None
        problem = getattr(services.dispatcher, "start_problem", None)
        if not live and problem is not None:
            try:
                reason = problem(prediction.pool)
            except Exception:  # noqa: BLE001 - the prediction still fails, with a plainer reason
                log.exception("could not ask why pool %s has no runner", prediction.pool)
                reason = ""
            if reason is None:  # a runner of its pool is starting up (the dispatcher says)
                live = True
        if live:  # its runner is booting (environment, setup) or busy with earlier work: not stuck
            services.outbox.reschedule(
                event.id, due_at=add_seconds(now, START_RECHECK_SECONDS), attempts=event.attempts + 1
            )
            return None
        limit = seconds_between(prediction.created_at, prediction.start_by or now)
        error = f"The prediction did not start within {_duration(limit)}: " + (reason or "no runner started for it.")
        done = self._update(prediction.id, transitions.fail(error, now=now, from_=[Status.STARTING]))
        services.outbox.complete(event.id)
        if done:
            log.warning("prediction %s failed to start: %s", prediction.id, error)
        return done

    def _timeout(self, event: OutboxEvent, now: str) -> bool:
        services = self.services
        prediction = services.state.get_prediction(event.prediction_id)
        services.outbox.complete(event.id)
        if (
            prediction is None
            or prediction.status != Status.PROCESSING
            or prediction.started_at != event.payload.get("started_at")
        ):
            return False
        return self._update(prediction.id, transitions.time_out(prediction, now=now))

    def lost_runners(self, now: str) -> int:
        services = self.services
        failed = 0
        for runner in services.state.list_runners():
            if not runner.heartbeat_at or seconds_between(runner.heartbeat_at, now) < self.lost_after:
                continue
            log.warning("runner %s stopped heartbeating at %s", runner.id, runner.heartbeat_at)
            self.lost_pools.add(runner.pool)
            for prediction_id in runner.in_flight:
                log.warning(
                    "failing prediction %s of lost runner %s",
                    prediction_id,
                    runner.id,
                    extra={"prediction_id": prediction_id},
                )
                prediction = services.state.get_prediction(prediction_id)
                if prediction and prediction.status == Status.PROCESSING and prediction.runner_id == runner.id:
                    reason = (
                        "The runner serving this prediction stopped responding (no heartbeat for "
                        f"{self.lost_after:g} s)."
                    )
                    failed += self._update(prediction_id, transitions.fail(reason, now=now, from_=[Status.PROCESSING]))
            services.state.delete_runner(runner.id)
        return failed
