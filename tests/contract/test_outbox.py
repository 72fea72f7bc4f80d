"""Outbox contract: events are written by the StateStore with a state change, read when due."""

from __future__ import annotations

from cogplane.domain.entities import OutboxEvent, Prediction


def ts(n: int) -> str:
    return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}.000000Z"


def event(n: int, *, due: int, prediction_id: str = "p1") -> OutboxEvent:
    return OutboxEvent(
        id=f"ev-{n:03d}",
        kind="webhook",
        prediction_id=prediction_id,
        payload={"n": n},
        due_at=ts(due),
        created_at=ts(0),
    )


def write(store, events: list[OutboxEvent], *, pid: str = "p1") -> None:
    store.create_prediction(
        Prediction(id=pid, owner="alice", model="alice/m", version="v", input={}, created_at=ts(0)),
        outbox=events,
    )


def test_due_returns_due_events_oldest_first(store, outbox):
    write(store, [event(1, due=30), event(2, due=10), event(3, due=20), event(4, due=50)])
    write(store, [event(5, due=20), event(6, due=40)], pid="p2")
    due = outbox.due(ts(40), kind="webhook")
    assert [e.id for e in due] == ["ev-002", "ev-003", "ev-005", "ev-001", "ev-006"]  # due_at <= now
    assert due[0] == event(2, due=10)
    assert [e.id for e in outbox.due(ts(40), limit=2, kind="webhook")] == ["ev-002", "ev-003"]
    assert outbox.due(ts(9), kind="webhook") == []


def test_complete_removes_the_event(store, outbox):
    write(store, [event(1, due=1), event(2, due=2)])
    outbox.complete("ev-001")
    assert [e.id for e in outbox.due(ts(10), kind="webhook")] == ["ev-002"]
    outbox.complete("ev-001")  # idempotent
    outbox.complete("ev-002")
    assert outbox.due(ts(10), kind="webhook") == []


def test_reschedule_moves_the_event_and_counts_attempts(store, outbox):
    write(store, [event(1, due=1), event(2, due=2), event(3, due=3)])
    outbox.reschedule("ev-001", due_at=ts(30), attempts=1)
    assert [e.id for e in outbox.due(ts(10), kind="webhook")] == ["ev-002", "ev-003"]
    due = outbox.due(ts(30), kind="webhook")
    assert [e.id for e in due] == ["ev-002", "ev-003", "ev-001"]
    assert (due[2].due_at, due[2].attempts, due[2].payload) == (ts(30), 1, {"n": 1})
    outbox.reschedule("ev-001", due_at=ts(5), attempts=2)
    due = outbox.due(ts(10), kind="webhook")
    assert [(e.id, e.attempts) for e in due] == [("ev-002", 0), ("ev-003", 0), ("ev-001", 2)]


def test_reschedule_of_a_completed_event_does_nothing(store, outbox):
    write(store, [event(1, due=1)])
    outbox.complete("ev-001")
    outbox.reschedule("ev-001", due_at=ts(2), attempts=1)
    assert outbox.due(ts(100), kind="webhook") == []


def test_add_schedules_events_without_a_state_change(outbox):
    outbox.add(
        [
            event(1, due=5),
            OutboxEvent(
                id="ev-timer",
                kind="timer",
                prediction_id="",
                payload={"timer": "file_expiry"},
                due_at=ts(3),
                created_at=ts(0),
            ),
        ]
    )
    assert [e.id for e in outbox.due(ts(10), kind="webhook")] == ["ev-001"]
    (timer,) = outbox.due(ts(10), kind="timer")
    assert timer.payload == {"timer": "file_expiry"} and timer.due_at == ts(3)
    assert outbox.due(ts(2), kind="timer") == []
