"""Prediction transitions: what each move writes and the statuses it may be applied from.

Every `StateStore.update_prediction` call goes through one of these functions. Each returns a
`Transition`: the `changes` to write and the `expect_status` the stored prediction must still be
in. The store applies both atomically, or raises `Conflict` (someone else moved it first: a lost
race, never an error to report). The allowed moves are those of `cogplane.domain.status`
(`can_transition`): asking for a move it forbids — anything out of a terminal status, say —
raises `Conflict` here, before any write.

    transitions.start(now=now, runner_id=runner.id).apply(state, prediction.id)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cogplane.domain.entities import Prediction
from cogplane.domain.errors import Conflict
from cogplane.domain.status import TERMINAL, Status, can_transition, sources_for
from cogplane.domain.timefmt import seconds_between

DEADLINE_ERROR = "The prediction did not start before its Cancel-After deadline."

_ORDER = list(Status)


class _Updates(Protocol):
    """The one method of `cogplane.ports.StateStore` a transition needs."""

    def update_prediction(
        self, prediction_id: str, changes: dict[str, Any], *, expect_status: Iterable[str] | None = None
    ) -> Prediction: ...


@dataclass(frozen=True)
class Transition:
    """`changes` to write to a prediction, only while its status is one of `expect_status`."""

    changes: Mapping[str, Any] = field(default_factory=dict)
    expect_status: tuple[Status, ...] = ()

    @property
    def target(self) -> Status | None:
        """The status it moves to; None when it only amends fields."""
        status = self.changes.get("status")
        return None if status is None else Status(status)

    def apply(self, state: _Updates, prediction_id: str) -> Prediction:
        """Write it; raises Conflict if the prediction is no longer in `expect_status`, NotFound
        if it is gone."""
        return state.update_prediction(prediction_id, dict(self.changes), expect_status=self.expect_status)


def _statuses(values: Iterable[Status | str]) -> tuple[Status, ...]:
    return tuple(sorted({Status(v) for v in values}, key=_ORDER.index))


def _move(target: Status, fields: Mapping[str, Any], from_: Iterable[Status | str] | None) -> Transition:
    if "status" in fields:
        raise ValueError("the transition sets the status; pass the other fields only")
    sources = _statuses(sources_for(target) if from_ is None else from_)
    refused = [s for s in sources if not can_transition(s, target)]
    if refused or not sources:
        what = ", ".join(refused) or "nothing"
        raise Conflict(f"A prediction cannot go from {what} to {target}.")
    return Transition({"status": target, **fields}, sources)


# --- moves between statuses ---------------------------------------------------------------
def start(*, now: str, runner_id: str) -> Transition:
    """A runner takes a queued prediction: starting → processing."""
    return _move(Status.PROCESSING, {"started_at": now, "runner_id": runner_id}, [Status.STARTING])


def succeed(
    fields: Mapping[str, Any] | None = None, *, from_: Iterable[Status | str] = (Status.PROCESSING,)
) -> Transition:
    """The run finished with its output (`fields`: output, logs, metrics, completed_at, ...)."""
    return _move(Status.SUCCEEDED, dict(fields or {}), from_)


def fail(
    error: str | None,
    *,
    now: str | None = None,
    from_: Iterable[Status | str] | None = None,
    **fields: Any,
) -> Transition:
    """The prediction failed with `error` (default: from any status that may fail)."""
    changes: dict[str, Any] = {"error": error, **fields}
    if now is not None:
        changes["completed_at"] = now
    return _move(Status.FAILED, changes, from_)


def finish(status: Status | str, fields: Mapping[str, Any] | None = None) -> Transition:
    """A run ended as the model server says (`succeeded`, `failed` or `canceled`): processing → it."""
    target = Status(status)
    if target not in (Status.SUCCEEDED, Status.FAILED, Status.CANCELED):
        raise ValueError(f"a run cannot end as {status!r}")
    return _move(target, dict(fields or {}), [Status.PROCESSING])


def run_metrics(prediction: Prediction, now: str) -> dict[str, Any]:
    """The prediction's metrics when it is stopped at `now`: predict_time (kept if the runner
    recorded it) and total_time."""
    metrics = dict(prediction.metrics)
    if prediction.started_at:
        metrics.setdefault("predict_time", round(seconds_between(prediction.started_at, now), 6))
        metrics["total_time"] = round(seconds_between(prediction.created_at, now), 6)
    return metrics


def cancel(prediction: Prediction, *, now: str) -> Transition:
    """Canceled by its owner or its Cancel-After deadline, from the status it was read in
    (a running one gets its metrics). Conflict if it is already terminal."""
    fields: dict[str, Any] = {"completed_at": now}
    if prediction.started_at:
        fields["metrics"] = run_metrics(prediction, now)
    return _move(Status.CANCELED, fields, [prediction.status])


def abort(*, now: str, error: str = DEADLINE_ERROR) -> Transition:
    """Its Cancel-After deadline passed before it started: starting → aborted."""
    return _move(Status.ABORTED, {"completed_at": now, "error": error}, [Status.STARTING])


def time_out(prediction: Prediction, *, now: str) -> Transition:
    """It ran longer than its timeout: processing → failed, with its metrics."""
    started = prediction.started_at or now
    limit = prediction.timeout or seconds_between(started, now)
    metrics = dict(prediction.metrics)
    metrics["predict_time"] = round(seconds_between(started, now), 6)
    metrics["total_time"] = round(seconds_between(prediction.created_at, now), 6)
    return fail(
        f"Prediction timed out: it ran longer than the {limit:g} s limit.",
        now=now,
        metrics=metrics,
        from_=[Status.PROCESSING],
    )


# --- changes that keep the status ---------------------------------------------------------
def amend(fields: Mapping[str, Any], *, status: Status | str) -> Transition:
    """Change fields other than the status (logs and output while it runs, `shared`), only while
    the prediction is still in `status` (the one read)."""
    if "status" in fields:
        raise ValueError("amend keeps the status; use a move to change it")
    return Transition(dict(fields), (Status(status),))


def remove_data() -> Transition:
    """The retention period is over: input, output and logs go; only a finished prediction."""
    return Transition({"input": {}, "output": None, "logs": "", "data_removed": True}, _statuses(TERMINAL))
