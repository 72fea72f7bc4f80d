"""Pool names: the one place they are built (`pools.for_version(id)`, ...) and read
(`pools.parse(name)`). A pool is the queue (and set of runners) one kind of work goes to:

- `v-{version_id}`: a version's predictions;
- `t-{version_id}`: trainings of a version (cog in train mode);
- `d-{owner}.{name}.{version_id}`: a deployment's predictions on one of its versions (owners have
  no `.`, names may, version ids are hex). A release to another version opens another pool; the
  old one drains its work with its own version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VERSION_PREFIX = "v-"
TRAINING_PREFIX = "t-"
DEPLOYMENT_PREFIX = "d-"

PoolKind = Literal["version", "training", "deployment"]


@dataclass(frozen=True)
class Pool:
    kind: PoolKind
    version_id: str
    owner: str | None = None  # deployment pools: the deployment's owner and name
    name: str | None = None

    @property
    def training(self) -> bool:
        return self.kind == "training"


def for_version(version_id: str) -> str:
    return f"{VERSION_PREFIX}{version_id}"


def for_training(version_id: str) -> str:
    return f"{TRAINING_PREFIX}{version_id}"


def for_deployment(owner: str, name: str, version_id: str) -> str:
    return f"{DEPLOYMENT_PREFIX}{owner}.{name}.{version_id}"


def parse(pool: str) -> Pool | None:
    """What a pool name says, or None for a name that is none of the three."""
    if pool.startswith(VERSION_PREFIX) and len(pool) > len(VERSION_PREFIX):
        return Pool("version", pool[len(VERSION_PREFIX) :])
    if pool.startswith(TRAINING_PREFIX) and len(pool) > len(TRAINING_PREFIX):
        return Pool("training", pool[len(TRAINING_PREFIX) :])
    if pool.startswith(DEPLOYMENT_PREFIX):
        rest, _, version_id = pool[len(DEPLOYMENT_PREFIX) :].rpartition(".")
        owner, _, name = rest.partition(".")
        if owner and name and version_id:
            return Pool("deployment", version_id, owner=owner, name=name)
    return None


def parse_deployment(pool: str) -> tuple[str, str, str] | None:
    """(owner, name, version_id) of a deployment pool, or None for another pool."""
    parsed = parse(pool)
    if parsed is None or parsed.kind != "deployment" or parsed.owner is None or parsed.name is None:
        return None
    return parsed.owner, parsed.name, parsed.version_id
