"""Entities. Plain dataclasses that round-trip through dicts (the adapters store them as JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

from cogplane.domain.status import Status

T = TypeVar("T")


_SCALARS = (str, int, float, bool, type(None))
_NAMES: dict[type, tuple[str, ...]] = {}
_KEYS: dict[type, frozenset[str]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _keys(cls: type) -> frozenset[str]:
    """The field names as a set: `from_dict` tests every stored key against them (a tuple's
    `in` compared up to 32 strings per key: 13 µs of a prediction's 16)."""
    keys = _KEYS.get(cls)
    if keys is None:
        keys = _KEYS[cls] = frozenset(_names(cls))
    return keys


def _plain(value: Any) -> Any:
    """What `dataclasses.asdict` makes of a field's value (nested containers copied), without its
    generic machinery: records are written and read on every state change of a prediction."""
    if isinstance(value, _SCALARS):
        return value
    if type(value) is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if type(value) is list:
        return [_plain(v) for v in value]
    if isinstance(value, _Record):
        return value.to_dict()
    return dataclasses.asdict(_Wrap(value)).get("value")  # anything else: exactly as asdict does


@dataclass
class _Wrap:
    value: Any


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return {name: _plain(getattr(self, name)) for name in _names(type(self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        keys = _keys(cls)
        if keys.issuperset(data):  # the usual case: nothing unknown to drop
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in keys})

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass
class Account(_Record):
    username: str
    type: str = "user"  # user | organization
    name: str = ""
    github_url: str | None = None
    avatar_url: str | None = None
    created_at: str = ""
    webhook_secret: str = ""  # "whsec_" + base64 of the signing key
    admin: bool = False  # may use /v1/admin/ (the install's first user)


@dataclass
class ApiToken(_Record):
    """An API token of one account (user or organization). Only its sha256 is stored."""

    id: str  # public handle ("tok_…"), for listing and revoking
    account: str
    name: str
    token_hash: str
    created_at: str
    last_used_at: str | None = None  # refreshed at most once a minute


@dataclass
class Membership(_Record):
    """A user's place in an organization."""

    org: str
    username: str
    role: str = "member"  # owner | member
    created_at: str = ""


@dataclass
class UsageRecord(_Record):
    """Billable predict time of one account on one hardware on one UTC day."""

    account: str
    day: str  # YYYY-MM-DD
    hardware: str
    predict_time: float = 0.0
    predictions: int = 0


@dataclass
class Model(_Record):
    owner: str
    name: str
    visibility: str = "private"  # public | private
    hardware: str = "cpu"
    description: str | None = None
    github_url: str | None = None
    paper_url: str | None = None
    license_url: str | None = None
    cover_image_url: str | None = None
    weights_url: str | None = None
    readme: str | None = None
    created_at: str = ""
    latest_version_id: str | None = None
    latest_version_created_at: str | None = None
    run_count: int = 0
    default_example_id: str | None = None
    example_ids: list[str] = field(default_factory=list)  # predictions shown as the model's examples
    safety_checker: str = "off"  # off | web | all: which predictions get the platform's image safety check

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Version(_Record):
    id: str
    owner: str
    name: str
    created_at: str
    openapi_schema: dict[str, Any]
    cog_version: str = "0.23.1"
    kind: str = "source"  # source | image
    bundle_key: str | None = None  # blob key of the source bundle
    image: str | None = None  # for image versions
    config: dict[str, Any] = field(default_factory=dict)  # cog.yaml as a dict
    size: int = 0
    # trained versions: the base version's code with these weights (cog's COG_WEIGHTS)
    weights_key: str | None = None  # blob key of the weights file, kept while the version exists
    trained_from: str | None = None  # "owner/name:version" of the base version
    training_id: str | None = None  # the training that made it

    @property
    def model(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Prediction(_Record):
    id: str
    owner: str  # the account that created it; predictions are private to it
    model: str  # owner/name
    version: str  # 64-hex version id
    input: dict[str, Any] | None
    created_at: str
    status: Status = Status.STARTING  # stored and served as its string value
    source: str = "api"  # api | web
    output: Any = None
    logs: str | None = ""
    error: str | None = None
    data_removed: bool = False
    started_at: str | None = None
    completed_at: str | None = None
    deadline: str | None = None
    deployment: str | None = None
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    stream: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    pool: str = ""  # the job queue / runner pool that serves it
    runner_id: str | None = None
    shared: bool = False  # web predictions made viewable by anyone at their URL
    remove_at: str | None = None  # when input/output/logs are removed (API predictions: +1 h)
    timeout: float | None = None  # seconds a run may take before it is failed (install/deployment)
    start_by: str | None = None  # not processing by then (and no live runner for its pool): failed
    hooks: dict[str, str] = field(default_factory=dict)  # webhook throttle: kind -> last scheduled due_at
    hardware: str = ""  # the SKU it runs on (usage is recorded per account and hardware)
    # the safety check of image outputs: None = not checked; {"checked": False, "flagged": []} = the
    # runner checks it before the output is recorded; {"checked": True, "flagged": [i, ...]} = done
    safety: dict[str, Any] | None = None
    # The random folder of its input/output blobs (`predictions/{blob_dir}/…`), so output URLs never
    # name the prediction. None for predictions made before it existed (their folder is the id).
    blob_dir: str | None = None
    kind: str = "prediction"  # prediction | training (a run of the version's `train` interface)
    destination: str | None = None  # trainings: "owner/name" that gets the trained version

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # a stored (or cog-sent) string becomes the enum


@dataclass
class Deployment(_Record):
    owner: str
    name: str
    model: str
    version: str
    hardware: str
    min_instances: int
    max_instances: int
    release_number: int = 1
    release_created_at: str = ""
    created_by: str = ""
    timeout: float | None = None  # seconds a prediction may run (None: the install's default)


@dataclass
class Job(_Record):
    """A unit of work on a pool's queue: run prediction `prediction_id`."""

    prediction_id: str
    pool: str
    enqueued_at: str
    receipt: str | None = None  # adapter-specific handle of a claimed job
    attempts: int = 0
    sealed: str | None = None  # the prediction's secret inputs, encrypted for the runner (cogplane.sealing)


@dataclass
class OutboxEvent(_Record):
    """Something that must happen after a state change (e.g. a webhook), written with it atomically."""

    id: str
    kind: str  # e.g. "webhook"
    prediction_id: str
    payload: dict[str, Any]
    due_at: str
    attempts: int = 0
    created_at: str = ""


@dataclass
class Page(Generic[T]):
    """One page of a cursor-paged list. `next_cursor` is opaque; None = last page."""

    items: list[T]
    next_cursor: str | None = None
    prev_cursor: str | None = None


@dataclass
class Runner(_Record):
    """A runner process/task serving one pool; its heartbeat tells the expirer it is alive."""

    id: str
    pool: str
    state: str = "booting"  # booting | ready | stopping
    version: str | None = None
    pid: int | None = None
    host: str | None = None
    started_at: str = ""
    heartbeat_at: str = ""
    in_flight: list[str] = field(default_factory=list)
    doorbell: str | None = None  # "host:port" (UDP) that wakes an idle runner at once (single machine)


@dataclass
class File(_Record):
    """An upload of the files API (usable as a model input by its owner)."""

    id: str
    owner: str
    name: str
    content_type: str
    size: int
    etag: str  # md5 hex
    checksums: dict[str, str]
    metadata: dict[str, Any]
    created_at: str
    expires_at: str
    blob_key: str
