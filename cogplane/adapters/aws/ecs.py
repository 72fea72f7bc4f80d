"""The ECS dispatcher: the deployed `Dispatcher` port. A pool's cold boot is one ECS task.

`wake(pool)` runs after a job is enqueued and must return quickly: one ListTasks tells how many
runner tasks the pool already has (tasks are started with `startedBy` = a short hash of the pool,
so this costs one call whatever the cluster holds); with none, one RunTask starts a runner (a
cold boot); with some, another is added only while the backlog outgrows them, up to the cap.
Runners exit by themselves when idle (scale to zero); deployments' `min_instances` are kept by
the expirer through `keep_warm`, whose tasks carry a separate `startedBy`.

GPU SKUs run on their EC2 capacity provider (bridge networking: the container goes out through
the instance); `cpu` runs on Fargate (awsvpc with a public IP: no NAT gateway in the stack).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from cogplane.ports import JobQueue, StateStore

log = logging.getLogger("cogplane.dispatcher.ecs")

CPU = "cpu"
POOL_TAG = "cogplane:pool"
WARM_TAG = "cogplane:keep-warm"
RUNNER_CONTAINER = "runner"
STARTED_BY_MAX = 36  # ECS limit on `startedBy`
_DEPLOYMENT_POOL_PREFIX = "d-"  # pools of deployments: d-{owner}.{name}.{version}
_TAG_VALUE_MAX = 256


def started_by(pool: str, *, warm: bool = False) -> str:
    """A `startedBy` value unique to the pool (ECS allows 36 letters, digits, `-` and `_`)."""
    digest = hashlib.sha256(pool.encode("utf-8")).hexdigest()
    value = ("cpw-" if warm else "cp-") + digest
    return value[:STARTED_BY_MAX]


@dataclass
class EcsConfig:
    """Where and how runners start; the stack writes it as JSON (COGPLANE_ECS_DISPATCH)."""

    cluster: str
    task_definitions: dict[str, str]  # hardware SKU -> task definition ARN
    capacity_providers: dict[str, str] = field(default_factory=dict)  # GPU SKU -> capacity provider
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    max_per_pool: int = 4

    @classmethod
    def from_json(cls, text: str) -> EcsConfig:
        data = json.loads(text)
        return cls(
            cluster=data["cluster"],
            task_definitions=dict(data["task_definitions"]),
            capacity_providers=dict(data.get("capacity_providers") or {}),
            subnets=list(data.get("subnets") or []),
            security_groups=list(data.get("security_groups") or []),
            max_per_pool=int(data.get("max_per_pool", 4)),
        )


class StatePoolHardware:
    """The hardware SKU a pool runs on: its deployment's, or its version's model's."""

    def __init__(self, state: StateStore):
        self.state = state
        self._cache: dict[str, str] = {}

    def __call__(self, pool: str) -> str:
        if pool not in self._cache:
            self._cache[pool] = self._lookup(pool)
        return self._cache[pool]

    def _lookup(self, pool: str) -> str:
        if pool.startswith(_DEPLOYMENT_POOL_PREFIX):
            rest, _, _version = pool[len(_DEPLOYMENT_POOL_PREFIX):].rpartition(".")
            owner, _, name = rest.partition(".")
            deployment = self.state.get_deployment(owner, name) if owner and name else None
            return deployment.hardware if deployment else CPU
        if pool.startswith("v-"):
            for version in self.state.find_versions(pool[2:]):
                model = self.state.get_model(version.owner, version.name)
                if model is not None:
                    return model.hardware
        return CPU


class EcsDispatcher:
    def __init__(self, ecs_client: Any, *, cluster: str, task_definitions: dict[str, str],
                 capacity_providers: dict[str, str], subnets: list[str], security_groups: list[str],
                 max_per_pool: int = 4, hardware_for: Callable[[str], str] | None = None,
                 queue: JobQueue | None = None, container: str = RUNNER_CONTAINER,
                 now: Callable[[], float] = time.time):
        self.ecs = ecs_client
        self.cluster = cluster
        self.task_definitions = dict(task_definitions)
        self.capacity_providers = dict(capacity_providers)
        self.subnets = list(subnets)
        self.security_groups = list(security_groups)
        self.max_per_pool = max_per_pool
        self.hardware_for = hardware_for or (lambda pool: CPU)
        self.queue = queue
        self.container = container
        self.now = now

    @classmethod
    def from_config(cls, ecs_client: Any, config: EcsConfig, **kwargs: Any) -> EcsDispatcher:
        return cls(ecs_client, cluster=config.cluster, task_definitions=config.task_definitions,
                   capacity_providers=config.capacity_providers, subnets=config.subnets,
                   security_groups=config.security_groups, max_per_pool=config.max_per_pool, **kwargs)

    # --- the port -----------------------------------------------------------------------
    def wake(self, pool: str) -> None:
        """Start a runner for the pool if it has none (or its backlog outgrows them). Never
        raises: the job is queued already, and the next wake or the expirer retries."""
        try:
            self.ensure(pool)
        except (ClientError, BotoCoreError, ValueError):
            log.exception("could not start a runner for pool %s", pool)

    # --- the work -----------------------------------------------------------------------
    def ensure(self, pool: str) -> str | None:
        """Returns the ARN of a task it started, or None when the pool has enough runners."""
        running = self.count(pool) + self.count(pool, warm=True)
        if running == 0:
            return self.start(pool)  # a cold boot
        if running >= self.max_per_pool or self.queue is None:
            return None
        if self.queue.depth(pool) > running:  # more waiting jobs than runners: add one
            return self.start(pool)
        return None

    def keep_warm(self, pool: str, count: int) -> list[str]:
        """Start warm runners (never exit on idle) until the pool has `count` of them."""
        missing = count - self.count(pool, warm=True)
        started = []
        for _ in range(max(0, missing)):
            arn = self.start(pool, warm=True)
            if arn:
                started.append(arn)
        return started

    def count(self, pool: str, *, warm: bool = False) -> int:
        """Tasks of the pool that are pending or running (desired status RUNNING)."""
        total = 0
        kwargs: dict[str, Any] = {"cluster": self.cluster, "startedBy": started_by(pool, warm=warm),
                                  "desiredStatus": "RUNNING"}
        while True:
            resp = self.ecs.list_tasks(**kwargs)
            total += len(resp.get("taskArns", []))
            token = resp.get("nextToken")
            if not token:
                return total
            kwargs["nextToken"] = token

    def start(self, pool: str, *, warm: bool = False) -> str | None:
        hardware = self.hardware_for(pool)
        task_definition = self.task_definitions.get(hardware)
        if task_definition is None:
            raise ValueError(f"No runner task definition for hardware {hardware!r} (pool {pool})")
        runner_id = "r-" + uuid.uuid4().hex[:12]
        command = ["python", "-m", "gpu_runner", "--pool", pool, "--runner-id", runner_id,
                   "--spawned-at", repr(self.now())]
        if warm:
            command.append("--keep-warm")
        kwargs: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": task_definition,
            "count": 1,
            "startedBy": started_by(pool, warm=warm),
            "overrides": {"containerOverrides": [{
                "name": self.container,
                "command": command,
                "environment": [{"name": "COGPLANE_RUNNER_ID", "value": runner_id}],
            }]},
            "tags": [
                {"key": POOL_TAG, "value": pool[:_TAG_VALUE_MAX]},
                {"key": "cogplane:runner", "value": runner_id},
                {"key": WARM_TAG, "value": "true" if warm else "false"},
            ],
            "propagateTags": "TASK_DEFINITION",
            "enableECSManagedTags": True,
        }
        provider = self.capacity_providers.get(hardware)
        if hardware != CPU and provider is None:
            raise ValueError(f"No capacity provider for GPU hardware {hardware!r} (pool {pool})")
        if hardware == CPU:
            kwargs["launchType"] = "FARGATE"
            kwargs["networkConfiguration"] = {"awsvpcConfiguration": {
                "subnets": self.subnets, "securityGroups": self.security_groups, "assignPublicIp": "ENABLED"}}
        else:
            kwargs["capacityProviderStrategy"] = [{"capacityProvider": provider, "weight": 1, "base": 0}]
        resp = self.ecs.run_task(**kwargs)
        tasks = resp.get("tasks") or []
        if not tasks:
            # Capacity providers queue tasks as PROVISIONING while instances start; an empty answer
            # means ECS refused (e.g. the group is at its max): the job waits for the next wake.
            log.warning("ECS started no runner for pool %s: %s", pool, resp.get("failures"))
            return None
        arn = tasks[0]["taskArn"]
        log.info("started runner %s for pool %s on %s (%s)", runner_id, pool, hardware, arn)
        return arn
