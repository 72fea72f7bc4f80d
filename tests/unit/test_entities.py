"""Records round-trip through the dicts the adapters store (cogplane/domain/entities.py)."""

from __future__ import annotations

import dataclasses

from cogplane.domain.entities import Account, Job, Prediction
from cogplane.domain.status import Status

TS = "2026-11-30T00:00:00.000000Z"


def prediction() -> Prediction:
    return Prediction(
        id="p1",
        owner="alice",
        model="alice/m",
        version="v",
        input={"prompt": "hi", "list": [1, {"a": 2}]},
        created_at=TS,
        metrics={"predict_time": 0.5},
    )


def test_a_record_round_trips_and_its_dict_is_asdicts() -> None:
    p = prediction()
    data = p.to_dict()
    assert data == dataclasses.asdict(p)
    assert Prediction.from_dict(data) == p
    data["input"]["prompt"] = "changed"  # the dict is a copy: the record is not changed through it
    assert p.input["prompt"] == "hi"


def test_keys_a_record_does_not_know_are_dropped() -> None:
    """A row written by another cogplane version may carry fields this one does not have."""
    p = prediction()
    assert Prediction.from_dict({**p.to_dict(), "added_later": 1}) == p
    assert Account.from_dict({"username": "bob", "unknown": True}) == Account(username="bob")
    assert Job.from_dict({"prediction_id": "p1", "pool": "x", "enqueued_at": TS, "x": 0}).prediction_id == "p1"


def test_a_stored_status_string_becomes_the_enum() -> None:
    p = Prediction.from_dict({**prediction().to_dict(), "status": "processing"})
    assert p.status is Status.PROCESSING
