"""What must happen after a prediction changes: webhook events and timers, derived from the
state before and after the change. Every adapter's create/update_prediction writes these into
the outbox in the same transaction as the change, so a crash in between loses nothing and no
caller can forget them.

- webhooks: `start` at creation, `logs`/`output` on change (at most one per 500 ms per kind,
  coalesced: the body is built at delivery time), `completed` on reaching a terminal state;
  only for the events in `webhook_events_filter` (default all).
- timers: data removal at `remove_at`, the Cancel-After `deadline`, the start deadline
  (`start_by`), and the run timeout once the prediction is processing.
"""

from __future__ import annotations

import uuid

from cogplane.domain.entities import OutboxEvent, Prediction
from cogplane.domain.status import TERMINAL
from cogplane.domain.timefmt import add_seconds

WEBHOOK = "webhook"
TIMER = "timer"
THROTTLE_SECONDS = 0.5  # Replicate (and cog) send output/logs webhooks at most every 500 ms


def _event(kind: str, prediction: Prediction, payload: dict, due_at: str, now: str) -> OutboxEvent:
    return OutboxEvent(
        id=uuid.uuid4().hex, kind=kind, prediction_id=prediction.id, payload=payload, due_at=due_at, created_at=now
    )


def wants(prediction: Prediction, event: str) -> bool:
    if not prediction.webhook:
        return False
    return prediction.webhook_events_filter is None or event in prediction.webhook_events_filter


def derive(before: Prediction | None, after: Prediction, now: str) -> list[OutboxEvent]:
    """The outbox events for a change from `before` (None: created) to `after`.

    May record throttle state in `after.hooks` (so call it before storing `after`)."""
    events: list[OutboxEvent] = []
    if before is None:
        if wants(after, "start"):
            events.append(_event(WEBHOOK, after, {"event": "start"}, now, now))
        if after.remove_at:
            events.append(_event(TIMER, after, {"timer": "remove"}, after.remove_at, now))
        if after.deadline:
            events.append(_event(TIMER, after, {"timer": "deadline"}, after.deadline, now))
        if after.start_by:
            events.append(_event(TIMER, after, {"timer": "start"}, after.start_by, now))
        return events
    if before.status != after.status:
        if after.status == "processing" and after.timeout and after.started_at:
            events.append(
                _event(
                    TIMER,
                    after,
                    {"timer": "timeout", "started_at": after.started_at},
                    add_seconds(after.started_at, after.timeout),
                    now,
                )
            )
        if after.status in TERMINAL and before.status not in TERMINAL:
            if wants(after, "completed"):
                events.append(_event(WEBHOOK, after, {"event": "completed"}, now, now))
            return events
    if after.status in TERMINAL:
        return events
    for kind, changed in (("output", before.output != after.output), ("logs", before.logs != after.logs)):
        if not changed or not wants(after, kind):
            continue
        last = after.hooks.get(kind)
        if last and last > now:
            continue  # one is already scheduled: it will carry this change too
        due = now
        if last:
            earliest = add_seconds(last, THROTTLE_SECONDS)
            due = max(now, earliest)
        after.hooks = {**after.hooks, kind: due}
        events.append(_event(WEBHOOK, after, {"event": kind}, due, now))
    return events
