"""The prediction status machine."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    ABORTED = "aborted"  # only with Cancel-After: deadline reached before the run started


class BuildStatus(StrEnum):
    """A source version's build (cogplane/builds.py): its environment is made on first boot."""

    PENDING = "pending"  # no runner has booted it yet
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_NEEDED = "not_needed"  # image versions, built by `cog build`


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.ABORTED})

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.STARTING: frozenset({Status.PROCESSING, Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.ABORTED}),
    Status.PROCESSING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED}),
}


def can_transition(current: Status | str, new: Status | str) -> bool:
    """A terminal prediction never changes again; processing never goes back to starting."""
    return Status(new) in _ALLOWED.get(Status(current), frozenset())


def sources_for(new: Status | str) -> frozenset[Status]:
    """The statuses a prediction may be in for a move to `new` to be allowed."""
    return frozenset(s for s, targets in _ALLOWED.items() if Status(new) in targets)
