"""Billable usage: what a prediction's change adds to its account's usage (only predict time
counts, as Replicate bills). Every adapter's update_prediction records it in the same
transaction as the change that makes the prediction terminal, so it is counted exactly once."""

from __future__ import annotations

from dataclasses import dataclass

from cogplane.domain.entities import Prediction
from cogplane.domain.status import TERMINAL


@dataclass(frozen=True)
class UsageDelta:
    account: str
    day: str  # YYYY-MM-DD (UTC) of completion
    hardware: str
    predict_time: float


def billable(before: Prediction | None, after: Prediction) -> UsageDelta | None:
    """The usage a change records: once, when a prediction becomes terminal with a predict time."""
    if before is not None and before.status in TERMINAL:
        return None
    if after.status not in TERMINAL:
        return None
    seconds = (after.metrics or {}).get("predict_time")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return None
    day = (after.completed_at or after.created_at)[:10]
    return UsageDelta(account=after.owner, day=day, hardware=after.hardware or "cpu", predict_time=float(seconds))
