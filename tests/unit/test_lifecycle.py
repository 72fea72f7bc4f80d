"""Which webhook events and timers a change yields (cogplane.domain.lifecycle.derive)."""

from __future__ import annotations

from cogplane.domain.entities import Prediction
from cogplane.domain.lifecycle import TIMER, WEBHOOK, derive

T0 = "2026-01-01T00:00:00.000000Z"


def at(seconds: float) -> str:
    from cogplane.domain.timefmt import add_seconds

    return add_seconds(T0, seconds)


def prediction(**kw) -> Prediction:
    base = {
        "id": "p",
        "owner": "a",
        "model": "a/m",
        "version": "v",
        "input": {},
        "created_at": T0,
        "webhook": "https://example.com/hook",
    }
    base.update(kw)
    return Prediction(**base)


def kinds(events):
    return [(e.kind, e.payload.get("event") or e.payload.get("timer"), e.due_at) for e in events]


def test_creation_yields_start_and_timers():
    p = prediction(remove_at=at(3600), deadline=at(60))
    assert kinds(derive(None, p, T0)) == [
        (WEBHOOK, "start", T0),
        (TIMER, "remove", at(3600)),
        (TIMER, "deadline", at(60)),
    ]


def test_filter_is_honoured_and_no_webhook_means_no_events():
    p = prediction(webhook_events_filter=["completed"])
    assert derive(None, p, T0) == []
    done = p.replace(status="succeeded")
    assert kinds(derive(p, done, T0)) == [(WEBHOOK, "completed", T0)]
    silent = prediction(webhook=None)
    assert derive(silent, silent.replace(status="succeeded"), T0) == []


def test_processing_starts_the_timeout_timer():
    p = prediction(webhook=None, timeout=1800)
    running = p.replace(status="processing", started_at=at(5))
    events = derive(p, running, at(5))
    assert kinds(events) == [(TIMER, "timeout", at(1805))]
    assert events[0].payload["started_at"] == at(5)


def test_logs_and_output_are_throttled_to_one_per_500ms_and_coalesced():
    p = prediction(status="processing")
    first = p.replace(logs="a")
    e1 = derive(p, first, at(0))
    assert kinds(e1) == [(WEBHOOK, "logs", at(0))]
    second = first.replace(logs="ab")
    e2 = derive(first, second, at(0.1))
    assert kinds(e2) == [(WEBHOOK, "logs", at(0.5))], "the next one waits for the 500 ms window"
    third = second.replace(logs="abc")
    assert derive(second, third, at(0.2)) == [], "already scheduled: it will carry this change too"
    fourth = third.replace(logs="abcd")
    assert kinds(derive(third, fourth, at(2))) == [(WEBHOOK, "logs", at(2))]


def test_terminal_yields_completed_once_and_nothing_after():
    p = prediction(status="processing")
    done = p.replace(status="failed", error="x")
    assert kinds(derive(p, done, at(1))) == [(WEBHOOK, "completed", at(1))]
    assert derive(done, done.replace(output=None, data_removed=True), at(2)) == []
