"""The domain's transitions: each returns the changes and the statuses it may apply to, and the
status machine (cogplane.domain.status) refuses moves out of a terminal status."""

from __future__ import annotations

import json

import pytest

from cogplane.domain import transitions
from cogplane.domain.entities import Prediction
from cogplane.domain.errors import Conflict
from cogplane.domain.status import TERMINAL, Status, can_transition, sources_for

T0 = "2026-03-01T12:00:00.000000Z"
T1 = "2026-03-01T12:00:01.000000Z"
T3 = "2026-03-01T12:00:03.500000Z"


def prediction(**fields) -> Prediction:
    return Prediction(id="p1", owner="alice", model="alice/m", version="v" * 64, input={}, created_at=T0, **fields)


def test_status_is_a_str_enum_and_entities_coerce_stored_strings():
    p = Prediction.from_dict({**prediction().to_dict(), "status": "processing"})
    assert p.status is Status.PROCESSING
    assert p.status == "processing"
    assert json.loads(json.dumps(p.to_dict()))["status"] == "processing"
    assert p.replace(status="succeeded").status is Status.SUCCEEDED
    with pytest.raises(ValueError):
        prediction(status="bogus")


def test_start_moves_a_queued_prediction_to_processing():
    t = transitions.start(now=T1, runner_id="r1")
    assert t.changes == {"status": "processing", "started_at": T1, "runner_id": "r1"}
    assert t.expect_status == (Status.STARTING,)
    assert t.target is Status.PROCESSING


def test_fail_defaults_to_every_status_that_may_fail():
    t = transitions.fail("boom", now=T1)
    assert t.changes == {"status": "failed", "error": "boom", "completed_at": T1}
    assert t.expect_status == (Status.STARTING, Status.PROCESSING)
    assert transitions.fail("x", from_=[Status.STARTING]).expect_status == (Status.STARTING,)


def test_finish_takes_the_model_servers_terminal_status():
    for status in ("succeeded", "failed", "canceled"):
        t = transitions.finish(status, {"output": 1})
        assert t.changes == {"status": status, "output": 1}
        assert t.expect_status == (Status.PROCESSING,)
    with pytest.raises(ValueError):
        transitions.finish("processing")
    with pytest.raises(ValueError):
        transitions.finish("aborted")  # only the Cancel-After deadline aborts


def test_cancel_is_conditional_on_the_status_read_and_records_run_metrics():
    queued = transitions.cancel(prediction(), now=T1)
    assert queued.changes == {"status": "canceled", "completed_at": T1}
    assert queued.expect_status == (Status.STARTING,)
    running = transitions.cancel(prediction(status="processing", started_at=T1, metrics={"x": 1}), now=T3)
    assert running.expect_status == (Status.PROCESSING,)
    assert running.changes["metrics"] == {"x": 1, "predict_time": 2.5, "total_time": 3.5}


def test_abort_and_time_out():
    t = transitions.abort(now=T1)
    assert t.changes == {"status": "aborted", "completed_at": T1, "error": transitions.DEADLINE_ERROR}
    assert t.expect_status == (Status.STARTING,)
    late = transitions.time_out(prediction(status="processing", started_at=T1, timeout=2), now=T3)
    assert late.expect_status == (Status.PROCESSING,)
    assert late.changes["status"] == "failed"
    assert late.changes["error"] == "Prediction timed out: it ran longer than the 2 s limit."
    assert late.changes["metrics"] == {"predict_time": 2.5, "total_time": 3.5}


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_moves_out_of_a_terminal_status_are_refused(terminal):
    done = prediction(status=terminal, started_at=T1)
    with pytest.raises(Conflict):
        transitions.cancel(done, now=T3)
    with pytest.raises(Conflict):
        transitions.fail("late", from_=[terminal])
    with pytest.raises(Conflict):
        transitions.succeed({"output": 1}, from_=[terminal])
    for target in Status:
        assert not can_transition(terminal, target)


def test_processing_never_goes_back_or_aborts():
    with pytest.raises(Conflict):
        transitions.fail("x", from_=[Status.PROCESSING, Status.STARTING, Status.SUCCEEDED])
    assert sources_for(Status.STARTING) == frozenset()
    assert sources_for(Status.ABORTED) == {Status.STARTING}
    assert not can_transition(Status.PROCESSING, Status.ABORTED)


def test_amend_keeps_the_status_read_and_remove_data_applies_to_finished_ones():
    t = transitions.amend({"logs": "hi\n"}, status="processing")
    assert t.changes == {"logs": "hi\n"} and t.expect_status == (Status.PROCESSING,)
    assert t.target is None
    assert transitions.amend({"shared": True}, status=Status.SUCCEEDED).expect_status == (Status.SUCCEEDED,)
    with pytest.raises(ValueError):
        transitions.amend({"status": "failed"}, status="processing")
    removed = transitions.remove_data()
    assert removed.changes == {"input": {}, "output": None, "logs": "", "data_removed": True}
    assert set(removed.expect_status) == TERMINAL


def test_a_move_sets_the_status_itself():
    with pytest.raises(ValueError):
        transitions.succeed({"status": "failed"})


def test_apply_hands_the_changes_and_condition_to_the_store():
    calls = []

    class Store:
        def update_prediction(self, prediction_id, changes, *, expect_status=None):
            calls.append((prediction_id, changes, expect_status))
            return prediction(**{k: v for k, v in changes.items() if k != "runner_id"})

    t = transitions.start(now=T1, runner_id="r1")
    stored = t.apply(Store(), "p1")
    assert stored.status is Status.PROCESSING
    assert calls == [("p1", {"status": "processing", "started_at": T1, "runner_id": "r1"}, (Status.STARTING,))]
    calls[0][1]["started_at"] = "mutated"
    assert t.changes["started_at"] == T1  # the store gets a copy
