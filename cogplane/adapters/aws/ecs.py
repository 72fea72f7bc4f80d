"""The ECS dispatcher: the deployed `Dispatcher` port. A pool's cold boot is one ECS task.

`wake(pool)` runs after a job is enqueued and must return quickly: one ListTasks tells how many
runner tasks the pool already has (tasks are started with `startedBy` = a short hash of the pool,
so this costs one call whatever the cluster holds); with none, one RunTask starts a runner (a
cold boot); with some, another is added only while the backlog outgrows them, up to the cap.
A pool found served (runners, and no backlog beyond them, or the cap) is trusted to stay so for
`SERVED_FOR_S` in this process: a burst of creates in a warm Lambda makes its ECS and SQS calls
(two ListTasks and a GetQueueAttributes, in series inside the create) once, not per request. A
served runner exits only after minutes idle, so the trust cannot hide a cold pool for long, and
the expirer's wake each minute catches what it might (a task stopped meanwhile).
Runners exit by themselves when idle (scale to zero); deployments' `min_instances` are kept by
the expirer through `keep_warm`, whose tasks carry a separate `startedBy`.

GPU SKUs run on their EC2 capacity provider (bridge networking: the container goes out through
the instance); `cpu` runs on Fargate (awsvpc with a public IP: no NAT gateway in the stack).

Image versions (`cogplane push --image`) run as a two-container task: the model image serving cog
on port 5000 and the runner as its sidecar (COG_URL). ECS cannot override a container's image in
RunTask, so the first dispatch of such a version registers a task definition for it, derived from
the SKU's runner task definition (roles, runner image, environment, logs, GPU count moved to the
model container): family `{runner family}-image-{digest[:12]}`, cached by family name (a
DescribeTaskDefinition finds it after a cold start).

Networking of image tasks (`image_task_kwargs`):
- EC2 (GPU SKUs): `bridge`, like the runner's own definition. Each container has its own network
  namespace on the instance's Docker bridge; the runner links to the model container (`links`:
  the name `model` resolves to it, COG_URL=http://model:5000) and cog serves on the model
  container's bridge address; the runner serves cog's webhooks and file inputs on its own bridge
  address under a secret path (gpu_runner.loopback). No port is published on the instance, two
  image tasks fit on one multi-GPU instance, and the model container, one hop behind the
  instance, cannot reach the instance metadata service (IMDSv2, hop limit 1). Host networking
  (before) shared the instance's network: the metadata service and the instance role's
  credentials, and fixed ports that allowed one image task per instance.
- Fargate (`cpu`): `awsvpc`, the only mode Fargate has; the containers share one namespace, so
  cog serves on 127.0.0.1.
ECS puts the task role's credentials URI (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) into every
container of a task; the model container's entry point (`/usr/bin/env -u ...`) removes it and its
kin before cog starts, so model code finds no URI in its environment or `/proc/1/environ`, and the
endpoint (169.254.170.2) gives nothing without that task's credentials id.
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

from cogplane.domain import pools
from cogplane.domain.hardware import CPU
from cogplane.ports import JobQueue, StateStore

log = logging.getLogger("cogplane.dispatcher.ecs")


POOL_TAG = "cogplane:pool"
WARM_TAG = "cogplane:keep-warm"
RUNNER_CONTAINER = "runner"
STARTED_BY_MAX = 36  # ECS limit on `startedBy`
_TAG_VALUE_MAX = 256
MODEL_CONTAINER = "model"
COG_PORT = 5000  # where cog serves in a model image (cog's default)
# What ECS may put into every container of a task with a role: the task role's credentials
# endpoint. The model container's entry point removes them before cog starts.
CREDENTIAL_VARIABLES = (
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
IMAGE_RUNNER_HTTP_PORT = 5099  # the runner's webhook/upload server in image tasks (fixed: cog's --upload-url)


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
    """The hardware SKU a pool runs on: its deployment's, or its version's model's; and the image
    of its version when that is an image version (`image(pool)`)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self._cache: dict[str, str] = {}
        self._images: dict[str, str | None] = {}

    def image(self, pool: str) -> str | None:
        if pool not in self._images:
            version = None
            parsed = pools.parse(pool)  # every kind of pool names its version
            if parsed is not None:
                found = self.state.find_versions(parsed.version_id)
                version = found[0] if found else None
            self._images[pool] = version.image if version is not None and version.kind == "image" else None
        return self._images[pool]

    def __call__(self, pool: str) -> str:
        if pool not in self._cache:
            self._cache[pool] = self._lookup(pool)
        return self._cache[pool]

    def _lookup(self, pool: str) -> str:
        parsed = pools.parse(pool)
        if parsed is None:
            return CPU
        if parsed.kind == "deployment" and parsed.owner and parsed.name:
            deployment = self.state.get_deployment(parsed.owner, parsed.name)
            return deployment.hardware if deployment else CPU
        if parsed.kind in ("version", "training"):
            for version in self.state.find_versions(parsed.version_id):
                model = self.state.get_model(version.owner, version.name)
                if model is not None:
                    return model.hardware
        return CPU


SERVED_FOR_S = 5.0  # how long wake() trusts a pool it found served (runner idle timeout: 300 s)


class EcsDispatcher:
    def __init__(
        self,
        ecs_client: Any,
        *,
        cluster: str,
        task_definitions: dict[str, str],
        capacity_providers: dict[str, str],
        subnets: list[str],
        security_groups: list[str],
        max_per_pool: int = 4,
        hardware_for: Callable[[str], str] | None = None,
        queue: JobQueue | None = None,
        container: str = RUNNER_CONTAINER,
        now: Callable[[], float] = time.time,
        image_for: Callable[[str], str | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
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
        self.image_for = image_for or (lambda pool: None)
        self._image_task_definitions: dict[str, str] = {}  # family -> ARN
        self.monotonic = monotonic
        self._served_until: dict[str, float] = {}  # pool -> when wake() checks ECS again

    @classmethod
    def from_config(cls, ecs_client: Any, config: EcsConfig, **kwargs: Any) -> EcsDispatcher:
        return cls(
            ecs_client,
            cluster=config.cluster,
            task_definitions=config.task_definitions,
            capacity_providers=config.capacity_providers,
            subnets=config.subnets,
            security_groups=config.security_groups,
            max_per_pool=config.max_per_pool,
            **kwargs,
        )

    # --- the port -----------------------------------------------------------------------
    def wake(self, pool: str) -> None:
        """Start a runner for the pool if it has none (or its backlog outgrows them). Never
        raises: the job is queued already, and the next wake or the expirer retries."""
        if self._served_until.get(pool, 0.0) > self.monotonic():
            return  # found served moments ago (see the module)
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
        if running < self.max_per_pool and self.queue is not None and self.queue.depth(pool) > running:
            return self.start(pool)  # more waiting jobs than runners: add one
        self._served_until[pool] = self.monotonic() + SERVED_FOR_S
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

    def retire_warm(self, pool: str, count: int) -> list[str]:
        """Stop the pool's warm runners beyond `count` (a deployment PATCHed to another version or
        hardware, a lower min_instances, a deleted deployment): warm runners never idle out, so
        without this an old release's task runs, and is paid for, for ever. StopTask sends the
        runner SIGTERM: it finishes in-flight work within its grace period and exits."""
        arns: list[str] = []
        kwargs: dict[str, Any] = {
            "cluster": self.cluster,
            "startedBy": started_by(pool, warm=True),
            "desiredStatus": "RUNNING",
        }
        while True:
            resp = self.ecs.list_tasks(**kwargs)
            arns += resp.get("taskArns", [])
            token = resp.get("nextToken")
            if not token:
                break
            kwargs["nextToken"] = token
        stopped = []
        for arn in arns[max(0, count) :]:
            log.info("retiring warm runner task %s of pool %s", arn, pool)
            self.ecs.stop_task(cluster=self.cluster, task=arn, reason="cogplane: warm runner retired")
            stopped.append(arn)
        return stopped

    def recent_pools(self, limit: int = 100) -> list[str]:
        """Pools of runner tasks that stopped recently (ECS lists stopped tasks for about an hour):
        where a wake may have been lost (a runner idled out just as work arrived, a task that
        crashed or never got capacity). One ListTasks and one DescribeTasks, whatever the cluster."""
        arns = self.ecs.list_tasks(
            cluster=self.cluster, desiredStatus="STOPPED", maxResults=max(1, min(100, limit))
        ).get("taskArns", [])
        if not arns:
            return []
        tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns, include=["TAGS"]).get("tasks", [])
        pools: list[str] = []
        for task in tasks:
            pool = _task_pool(task)
            if pool and pool not in pools:
                pools.append(pool)
        return pools

    def start_problem(self, pool: str) -> str | None:
        """Why the pool has no runner serving it, as ECS tells (for a prediction that did not start
        in time): its newest task's state, stopped reason and container reasons. None while a task
        of the pool is running (its runner is starting up: not a failure yet)."""
        arns: list[str] = []
        for warm in (False, True):
            for status in ("RUNNING", "STOPPED"):  # RUNNING = desired: includes PROVISIONING/PENDING
                arns += self.ecs.list_tasks(
                    cluster=self.cluster, startedBy=started_by(pool, warm=warm), desiredStatus=status, maxResults=20
                ).get("taskArns", [])
        hardware = self.hardware_for(pool)
        if not arns:
            return f"no runner task was started for its pool (hardware {hardware}); see the API's logs."
        tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[:100]).get("tasks", [])
        if not tasks:
            return f"its runner tasks are gone from ECS (hardware {hardware})."
        tasks.sort(key=lambda t: str(t.get("createdAt") or ""), reverse=True)
        task = next((t for t in tasks if t.get("lastStatus") != "STOPPED"), tasks[0])
        task_id = str(task.get("taskArn", "")).rsplit("/", 1)[-1]
        status = task.get("lastStatus") or "PROVISIONING"
        if status in ("PROVISIONING", "PENDING"):
            where = (
                f"capacity provider {self.capacity_providers[hardware]}"
                if hardware in self.capacity_providers
                else "Fargate"
            )
            return (
                f"its runner task {task_id} is still {status}: no capacity came for hardware {hardware} "
                f"({where}). Check the Auto Scaling group's activity and the account's EC2 vCPU quota "
                "for this instance family."
            )
        if status == "STOPPED":
            reasons = [task.get("stoppedReason") or "no reason given"]
            for container in task.get("containers") or []:
                if container.get("reason"):
                    reasons.append(f"{container.get('name')}: {container['reason']}")
                elif container.get("exitCode") not in (None, 0):
                    reasons.append(f"{container.get('name')} exited with code {container['exitCode']}")
            return f"its runner task {task_id} stopped: " + "; ".join(reasons)
        return None  # ACTIVATING/RUNNING: the runner is starting (it registers within seconds)

    def image_task_definition(self, image: str, hardware: str) -> str:
        """The task definition that runs `image` (REPO@sha256:...) with the runner as sidecar on
        `hardware`: registered on first use, then found by family name."""
        base_arn = self.task_definitions[hardware]
        base_family = base_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
        digest = image.rsplit("@sha256:", 1)[-1]
        family = f"{base_family}-image-{digest[:12]}"
        cached = self._image_task_definitions.get(family)
        if cached:
            return cached
        try:
            found = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        except ClientError:
            found = None
        if found and found.get("status", "ACTIVE") == "ACTIVE" and is_current_image_definition(found, image):
            arn = found["taskDefinitionArn"]
        else:
            base = self.ecs.describe_task_definition(taskDefinition=base_arn)["taskDefinition"]
            arn = self.ecs.register_task_definition(**image_task_kwargs(base, family, image, self.container))[
                "taskDefinition"
            ]["taskDefinitionArn"]
            log.info("registered %s for image %s on %s", arn, image, hardware)
        self._image_task_definitions[family] = arn
        return arn

    def count(self, pool: str, *, warm: bool = False) -> int:
        """Tasks of the pool that are pending or running (desired status RUNNING)."""
        total = 0
        kwargs: dict[str, Any] = {
            "cluster": self.cluster,
            "startedBy": started_by(pool, warm=warm),
            "desiredStatus": "RUNNING",
        }
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
        image = self.image_for(pool)
        if image:
            task_definition = self.image_task_definition(image, hardware)
        runner_id = "r-" + uuid.uuid4().hex[:12]
        command = [
            "python",
            "-m",
            "gpu_runner",
            "--pool",
            pool,
            "--runner-id",
            runner_id,
            "--spawned-at",
            repr(self.now()),
        ]
        if warm:
            command.append("--keep-warm")
        kwargs: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": task_definition,
            "count": 1,
            "startedBy": started_by(pool, warm=warm),
            "overrides": {
                "containerOverrides": [
                    {
                        "name": self.container,
                        "command": command,
                        "environment": [{"name": "COGPLANE_RUNNER_ID", "value": runner_id}],
                    }
                ]
            },
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
            kwargs["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": self.subnets,
                    "securityGroups": self.security_groups,
                    "assignPublicIp": "ENABLED",
                }
            }
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


def _task_pool(task: dict[str, Any]) -> str | None:
    """The pool a runner task serves: its `--pool` argument, else its pool tag."""
    for override in (task.get("overrides") or {}).get("containerOverrides") or []:
        command = override.get("command") or []
        if "--pool" in command[:-1]:
            return command[command.index("--pool") + 1]
    for tag in task.get("tags") or []:
        if tag.get("key") == POOL_TAG:
            return tag.get("value")
    return None


def is_current_image_definition(found: dict[str, Any], image: str) -> bool:
    """Whether a registered image task definition runs `image` as this version of the dispatcher
    would register it (bridge networking on EC2, credentials removed from the model container);
    one from before (host networking) gets a new revision."""
    model = next((c for c in found.get("containerDefinitions", []) if c.get("name") == MODEL_CONTAINER), None)
    if model is None or model.get("image") != image:
        return False
    fargate = "FARGATE" in (found.get("requiresCompatibilities") or [])
    if not fargate and found.get("networkMode") != "bridge":
        return False
    entry = model.get("entryPoint") or []
    return all(name in entry for name in CREDENTIAL_VARIABLES)


def image_task_kwargs(
    base: dict[str, Any], family: str, image: str, runner_name: str = RUNNER_CONTAINER
) -> dict[str, Any]:
    """RegisterTaskDefinition arguments for an image version, from the SKU's runner definition."""
    runner = dict(next(c for c in base["containerDefinitions"] if c["name"] == runner_name))
    gpu = [r for r in runner.pop("resourceRequirements", []) or [] if r.get("type") == "GPU"]
    fargate = "FARGATE" in (base.get("requiresCompatibilities") or [])
    # EC2: bridge (each container its own namespace; the runner reaches cog through its link);
    # Fargate: awsvpc (one shared namespace: cog on loopback)
    bridge = not fargate
    cog_host = MODEL_CONTAINER if bridge else "127.0.0.1"
    cog_bind = "0.0.0.0" if bridge else "127.0.0.1"  # noqa: S104 - the model container's own namespace
    unset = [arg for name in CREDENTIAL_VARIABLES for arg in ("-u", name)]
    model: dict[str, Any] = {
        "name": MODEL_CONTAINER,
        "image": image,
        "essential": True,
        # the task role's credentials URI, which ECS sets in every container, never reaches model
        # code: `env` removes it and execs cog's server (PID 1 then has the cleaned environment)
        "entryPoint": ["/usr/bin/env", *unset],
        # cog's server without --upload-url: file outputs come back as data URIs in the model's
        # order, and the runner stores them (with an upload URL coglet lists the files of a list
        # output in the order their parallel uploads finish)
        "command": ["python", "-m", "cog.server.http", "--host", cog_bind],
        "environment": [{"name": "PORT", "value": str(COG_PORT)}],  # never the runner's settings
    }
    if gpu:
        model["resourceRequirements"] = gpu
    if "logConfiguration" in runner:
        model["logConfiguration"] = runner["logConfiguration"]
    if not fargate:  # on EC2 the model gets the runner definition's reservation; the runner a little
        for key in ("cpu", "memoryReservation", "memory"):
            if runner.get(key):
                model[key] = runner[key]
        runner.update(cpu=256, memoryReservation=512)
        runner.pop("memory", None)
    else:  # Fargate shares the task's memory; soft reservations only
        model["memoryReservation"] = 1024
    runner["environment"] = [
        e for e in runner.get("environment", []) or [] if e["name"] not in ("COG_URL", "COGPLANE_RUNNER_HTTP_PORT")
    ] + [
        {"name": "COG_URL", "value": f"http://{cog_host}:{COG_PORT}"},
        {"name": "COGPLANE_RUNNER_HTTP_PORT", "value": str(IMAGE_RUNNER_HTTP_PORT)},
    ]
    runner.pop("portMappings", None)  # nothing is published on the instance
    if bridge:
        runner["links"] = [MODEL_CONTAINER]  # `model` resolves to the model container
    kwargs: dict[str, Any] = {
        "family": family,
        "containerDefinitions": [runner, model],
        "networkMode": "bridge" if bridge else base.get("networkMode", "awsvpc"),
        "tags": [{"key": "cogplane:image", "value": image[:_TAG_VALUE_MAX]}],
    }
    for key in (
        "taskRoleArn",
        "executionRoleArn",
        "requiresCompatibilities",
        "cpu",
        "memory",
        "ephemeralStorage",
        "runtimePlatform",
    ):
        if base.get(key):
            kwargs[key] = base[key]
    return kwargs
