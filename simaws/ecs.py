"""ECS: tasks started with RunTask (against moto) run here as local processes.

moto keeps the control plane (task definitions, RunTask, ListTasks, DescribeTasks, StopTask) and
never runs anything; this emulator watches the cluster's tasks and runs each one's essential
`runner` container exactly as its task definition and overrides say: the command (its `python`
is the runner image's interpreter: this repository's .venv), the image's environment (read from
gpu_runner/Dockerfile's ENV lines), the container's environment, then the overrides'. Paths
under the container's filesystem (/var/cogplane...) live in a folder per task; volumes in the
task definition (host source paths) are folders kept across tasks. A task whose process exits is
reported STOPPED with ECS's reason and the exit code; a task stopped through the API (StopTask)
gets SIGTERM, then SIGKILL after its stop timeout. With no capacity left (`capacity` tasks
running, or `sku_capacity[sku]` of its hardware: the SKU is read from the task definition's family
`{stack}-runner-{sku}`), a new task stays PENDING until one stops or capacity is raised.

The GPU SKUs' capacity providers (Auto Scaling groups, not emulated) are stood in for by one
container instance without resource limits (`provide_instance`): moto places EC2 tasks only on a
registered instance, and the emulator, not moto, decides what runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("simaws.ecs")

CONTAINER_ROOT = "/var/cogplane"  # the runner image's state folder (gpu_runner/Dockerfile)
STOP_TIMEOUT_S = 30  # ECS's default stopTimeout


def dockerfile_env(path: Path) -> dict[str, str]:
    """ENV lines of a Dockerfile (`ENV A=1 B=2 \\` continuations; no variable expansion)."""
    env: dict[str, str] = {}
    if not path.is_file():
        return env
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].upper() == "ENV":
            for item in shlex.split(parts[1]):
                if "=" in item:
                    key, value = item.split("=", 1)
                    env[key] = value
    return env


@dataclass
class RunningTask:
    arn: str
    proc: subprocess.Popen | None
    root: Path
    stopping_since: float | None = None
    sku: str = ""


class EcsEmulator:
    def __init__(
        self,
        *,
        cluster: str,
        region: str,
        account: str,
        home: Path,
        python: str,
        cwd: Path,
        base_env: dict[str, str],
        image_env: dict[str, str],
        capacity: int | None = None,
        sku_capacity: dict[str, int] | None = None,
        env_cache: Path | None = None,
        volume_overrides: dict[str, Path] | None = None,
        poll_s: float = 0.25,
        role_env: dict[str, dict[str, str]] | None = None,
    ):
        self.cluster = cluster
        self.region = region
        self.account = account
        self.home = home
        self.python = python
        self.cwd = cwd
        self.base_env = base_env
        self.image_env = image_env
        self.capacity = capacity
        self.sku_capacity = dict(sku_capacity or {})
        self.env_cache = env_cache  # a host folder for every task's COGPLANE_ENV_CACHE (SIMAWS_ENV_CACHE)
        self.volume_overrides = dict(volume_overrides or {})  # container path -> host folder
        self.poll_s = poll_s
        self.role_env = dict(role_env or {})  # task role ARN -> its credentials (SIMAWS_IAM)
        self.tasks: dict[str, RunningTask] = {}
        self.pending: list[str] = []
        self.started = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- moto's state (the server runs in this process) ----------------------------------------------
    def _backend(self):
        from moto.ecs.models import ecs_backends

        return ecs_backends[self.account][self.region]

    def _moto_tasks(self) -> dict[str, Any]:
        backend = self._backend()
        name = self.cluster.rsplit("/", 1)[-1]
        return dict(backend.tasks.get(name, {}))

    # --- the loop -----------------------------------------------------------------------------------
    def start(self) -> EcsEmulator:
        self._thread = threading.Thread(target=self._run, name="simaws-ecs", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.step()
            except Exception:  # keep emulating; the next step retries
                log.exception("ECS emulator step failed")

    def step(self) -> None:
        with self._lock:
            tasks = self._moto_tasks()
            for arn, task in tasks.items():
                if arn in self.tasks or arn in self.pending:
                    continue
                if task.desired_status != "RUNNING":
                    continue
                task.last_status = "PENDING"
                self.pending.append(arn)
            # start pending tasks while there is capacity (in order, per hardware SKU)
            for arn in list(self.pending):
                if self.capacity is not None and self._running() >= self.capacity:
                    break
                task = tasks.get(arn)
                if task is None or task.desired_status != "RUNNING":
                    continue
                sku = self._sku(task)
                if sku in self.sku_capacity and self._running(sku) >= self.sku_capacity[sku]:
                    continue
                self.pending.remove(arn)
                self._launch(arn, task)
            for arn in list(self.pending):  # stopped while pending
                task = tasks.get(arn)
                if task is None or task.desired_status != "RUNNING":
                    self.pending.remove(arn)
            for arn, running in list(self.tasks.items()):
                task = tasks.get(arn)
                if running.proc is None:
                    continue
                code = running.proc.poll()
                if code is not None:
                    self._stopped(task, running, code)
                elif task is not None and task.desired_status == "STOPPED":
                    self._terminate(running)

    def _running(self, sku: str | None = None) -> int:
        return sum(
            1
            for t in self.tasks.values()
            if t.proc is not None and t.proc.poll() is None and (sku is None or t.sku == sku)
        )

    def _sku(self, task: Any) -> str:
        family = str(task.task_definition_arn).rsplit("/", 1)[-1].rsplit(":", 1)[0]
        match = re.search(r"-runner-(.+?)(?:-image-[0-9a-f]{12})?$", family)
        return match.group(1) if match else ""

    def provide_instance(self, ec2: Any, ecs: Any) -> str:
        """One container instance for the cluster's EC2 capacity providers, with no resource limits."""
        instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
        document = {
            "instanceId": instance["InstanceId"],
            "instanceType": instance["InstanceType"],
            "availabilityZone": instance["Placement"]["AvailabilityZone"],
            "region": self.region,
            "imageId": instance["ImageId"],
            "privateIp": instance.get("PrivateIpAddress"),
        }
        arn = ecs.register_container_instance(cluster=self.cluster, instanceIdentityDocument=json.dumps(document))[
            "containerInstance"
        ]["containerInstanceArn"]
        name = self.cluster.rsplit("/", 1)[-1]
        registered = self._backend().container_instances[name][arn.rsplit("/", 1)[-1]]
        for resource in registered.remaining_resources + registered.registered_resources:
            if resource.get("name") in ("CPU", "MEMORY"):
                resource["integerValue"] = 1 << 40
        return arn

    def set_capacity(self, capacity: int | None) -> None:
        self.capacity = capacity

    # --- one task -------------------------------------------------------------------------------------
    def _container_path(self, root: Path, value: str, volumes: dict[str, Path]) -> str:
        for container_path, host in sorted(volumes.items(), key=lambda kv: -len(kv[0])):
            if value == container_path or value.startswith(container_path.rstrip("/") + "/"):
                return str(host) + value[len(container_path.rstrip("/")) :]
        if value == CONTAINER_ROOT or value.startswith(CONTAINER_ROOT + "/"):
            return str(root) + value
        return value

    def _launch(self, arn: str, task: Any) -> None:
        backend = self._backend()
        definition = backend.describe_task_definition(task.task_definition_arn)
        containers = definition.container_definitions
        overrides = {o.get("name"): o for o in (task.overrides or {}).get("containerOverrides", [])}
        task_id = arn.rsplit("/", 1)[-1]
        root = self.home / "tasks" / task_id
        root.mkdir(parents=True, exist_ok=True)
        # volumes: named host volumes are kept across tasks (an instance's disk / EFS)
        volumes: dict[str, Path] = {}
        named = {v.get("name"): v for v in (definition.volumes or [])}
        runner = next((c for c in containers if c.get("essential", True) and c.get("name") == "runner"), None)
        if runner is None or len(containers) != 1:
            reason = (
                "image versions (a model image beside the runner) need Docker: not emulated"
                if len(containers) > 1
                else "no `runner` container"
            )
            task.last_status = "STOPPED"
            task.desired_status = "STOPPED"
            task.stopped_reason = f"CannotStartContainerError: {reason}"
            self.tasks[arn] = RunningTask(arn, None, root)
            log.warning("task %s not started: %s", task_id, reason)
            return
        for mount in runner.get("mountPoints") or []:
            volume = named.get(mount.get("sourceVolume"), {})
            host = (volume.get("host") or {}).get("sourcePath") or mount.get("sourceVolume")
            folder = self.home / "volumes" / re.sub(r"[^A-Za-z0-9_.-]", "_", str(host).strip("/"))
            folder.mkdir(parents=True, exist_ok=True)
            volumes[mount["containerPath"]] = folder
        override = overrides.get("runner", {})
        command = override.get("command") or runner.get("command") or []
        if not command:
            raise ValueError(f"task {task_id}: no command")
        env = dict(self.base_env)
        role = (task.overrides or {}).get("taskRoleArn") or getattr(definition, "task_role_arn", None)
        env.update(self.role_env.get(role or "", {}))  # the task role's credentials, as ECS gives them
        env.update(self.image_env)
        env.update({e["name"]: e["value"] for e in runner.get("environment") or []})
        env.update({e["name"]: e["value"] for e in override.get("environment") or []})
        overrides_ = dict(self.volume_overrides)
        if self.env_cache is not None and env.get("COGPLANE_ENV_CACHE"):
            overrides_[env["COGPLANE_ENV_CACHE"]] = self.env_cache
        for container_path, folder in overrides_.items():
            folder.mkdir(parents=True, exist_ok=True)
            volumes[container_path] = folder
        env = {k: self._container_path(root, v, volumes) for k, v in env.items()}
        for key in ("COGPLANE_HOME",):
            if key in env:
                Path(env[key]).mkdir(parents=True, exist_ok=True)
        argv = [self.python if command[0] in ("python", "python3") else command[0], *command[1:]]
        log_file = open(self.home / f"task-{task_id}.log", "ab")
        proc = subprocess.Popen(
            argv,
            cwd=str(self.cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        self.tasks[arn] = RunningTask(arn, proc, root, sku=self._sku(task))
        self.started += 1
        task.last_status = "RUNNING"
        log.info("task %s started (%s): pid %d", task_id, " ".join(command[:6]), proc.pid)

    def _terminate(self, running: RunningTask) -> None:
        now = time.monotonic()
        if running.stopping_since is None:
            running.stopping_since = now
            _signal(running.proc, signal.SIGTERM)
        elif now - running.stopping_since > STOP_TIMEOUT_S:
            _signal(running.proc, signal.SIGKILL)

    def _stopped(self, task: Any, running: RunningTask, code: int) -> None:
        running.proc = None
        if task is None:
            return
        if task.desired_status != "STOPPED":  # it exited on its own
            task.stopped_reason = "Essential container in task exited"
            task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        for container in task.containers:
            container.last_status = "STOPPED"
            try:
                container.exit_code = code
            except AttributeError:
                pass
        log.info("task %s stopped (exit code %s): %s", running.arn.rsplit("/", 1)[-1], code, task.stopped_reason)

    def stop(self, timeout: float = 20) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        procs = [t.proc for t in self.tasks.values() if t.proc is not None and t.proc.poll() is None]
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()


def _signal(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
