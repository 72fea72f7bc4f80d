"""The single-machine dispatcher: runner processes per pool, cold boots, scale to zero.

A pool with queued work and no runner gets one (a cold boot); while the backlog stays, more are
added up to the pool's max; runners exit by themselves when idle. A runner that dies has its
in-flight predictions failed with a reason at once (its queued jobs come back when their leases
run out and go to a new runner). A pool whose model fails setup backs off instead of looping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cogplane.clock import epoch
from cogplane.domain import pools, transitions
from cogplane.domain.errors import Conflict, NotFound
from cogplane.domain.status import Status
from cogplane.ports import Clock, JobQueue, StateStore
from cogplane.processes import pdeathsig_preexec

if TYPE_CHECKING:
    from cogplane.adapters.local.sqlite import Database

log = logging.getLogger("cogplane.dispatcher")

EXIT_SETUP_FAILED = 3
# A served pool's backlog is looked at at most this often for its creates: a runner takes seconds
# to boot, so scaling up 50 ms later changes nothing, and one look per create cost the API CPU.
POKE_EVERY_S = 0.05
# An API worker process reads a pool's runners (their doorbells) again after this long.
DOORBELLS_TTL_S = 0.5
STOPPED = "stopped: cogplane was shut down before this prediction finished (its grace period ran out)."
STOPPED_AT_ONCE = "stopped: cogplane was stopped at once (a second Ctrl-C) before this prediction finished."
STOPPED_EARLIER = (
    "stopped: cogplane ended (it was killed) before this prediction finished; found when it started again."
)


def _address(doorbell: str) -> tuple[str, int] | None:
    """A runner record's doorbell ("host:port") as a socket address; None if it is none."""
    host, _, port = doorbell.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def wake_address(db_path: str) -> str:
    """The datagram socket where the dispatcher of the stack on this database hears the creates of
    the API's other processes (Linux abstract namespace: nothing on disk, gone with its process)."""
    digest = hashlib.sha256(os.path.abspath(db_path).encode()).hexdigest()[:24]
    return f"\0cogplane-wake-{digest}"


class ForwardedWake:
    """The dispatcher port in an API worker process (`make up` with COGPLANE_API_WORKERS > 1; the
    dispatcher runs in the first process). A create rings the doorbells of its pool's ready runners
    itself (their records, read at most every DOORBELLS_TTL_S), as the dispatcher would, and tells
    the dispatcher in one datagram: at once when no runner is ready (a cold boot starts at once),
    else at most every POKE_EVERY_S per pool (the dispatcher looks at the backlog to scale up).
    Nothing here waits: a lost datagram is made up for by the dispatcher's tick (0.25 s)."""

    def __init__(self, state: StateStore, address: str) -> None:
        self.state = state
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.bell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.bells: dict[str, tuple[float, list[tuple[str, int]]]] = {}
        self.told: dict[str, float] = {}

    def wake(self, pool: str) -> None:
        bells = self.doorbells(pool)
        for address in bells:
            with contextlib.suppress(OSError):
                self.bell.sendto(b"w", address)
        now = time.monotonic()
        if not bells or now - self.told.get(pool, 0.0) >= POKE_EVERY_S:
            self.told[pool] = now
            rang = b"+" if bells else b""  # the dispatcher rings them itself when we could not
            with contextlib.suppress(OSError):  # no dispatcher listening (it is stopping): its tick
                self.sock.sendto(rang + pool.encode(), self.address)

    def doorbells(self, pool: str) -> list[tuple[str, int]]:
        now = time.monotonic()
        cached = self.bells.get(pool)
        if cached is not None and now - cached[0] < DOORBELLS_TTL_S:
            return cached[1]
        ready = (r.doorbell for r in self.state.list_runners(pool) if r.state == "ready" and r.doorbell)
        found = [address for address in map(_address, ready) if address is not None]
        self.bells[pool] = (now, found)
        return found


@dataclass
class Child:
    id: str
    pool: str
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    keep_warm: bool = False
    retiring: bool = False
    doorbell: tuple[str, int] | None = None


class Stores(Protocol):
    """What the dispatcher reads and writes: runners and predictions (state), queue depths, the
    clock. Made over the same database before the services (local/stack.py), which then get the
    dispatcher when they are built (no patching afterwards); the services themselves also fit."""

    @property
    def state(self) -> StateStore: ...

    @property
    def queue(self) -> JobQueue: ...

    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True)
class LocalStores:
    state: StateStore
    queue: JobQueue
    clock: Clock


class ProcessDispatcher:
    def __init__(
        self,
        db: Database,
        stores: Stores,
        *,
        max_per_pool: int = 2,
        idle_timeout: float = 300.0,
        log_dir: Path,
        env: dict[str, str] | None = None,
        tick: float = 0.25,
        grace: float = 30.0,
        wake_address: str | None = None,
    ) -> None:
        """`wake_address`: also hear creates of the API's other processes there (ForwardedWake)."""
        self.db = db
        self.stores = stores
        self.max_per_pool = max_per_pool
        self.idle_timeout = idle_timeout
        self.log_dir = Path(log_dir)
        self.env = dict(env or {})
        self.tick = tick
        self.children: dict[str, Child] = {}
        self.backoff: dict[str, tuple[float, float]] = {}  # pool -> (until, current delay)
        self.last_exit: dict[str, tuple[str, int | None]] = {}  # pool -> (runner id, exit code)
        self.backlog_ticks: dict[str, int] = {}
        self.poked: dict[str, float] = {}  # pool -> when a create last asked for a look at it
        self.poke: set[str] = set()  # served pools a create asked the loop to look at
        self.tick_now = False  # a create for a pool without a live runner: a full tick at once
        self.deployments: dict[str, tuple[int, int]] = {}  # as the last full tick read them
        self.wakeup = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.on_exit = None  # test hook: called with (child, returncode)
        self.bell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.grace = grace  # stop(): how long in-flight predictions may run on
        self.hurried = threading.Event()
        self.wake_address = wake_address

    # --- the port -----------------------------------------------------------------------
    def wake(self, pool: str) -> None:
        """Ring the doorbells of the pool's runners (idle ones claim at once), and let the loop see
        the pool now: a full tick for a pool with no live runner (a cold boot starts at once); for a
        served one, a look at that pool's backlog only (`scale`), at most every `POKE_EVERY_S`.
        A full tick on every create cost the API process about 5 % of its CPU under load.
        The doorbells go first: setting `wakeup` lets the dispatcher thread take the GIL, and the
        runner's datagram waited behind it (0.13 ms of a warm prediction's path on the 2-core VM)."""
        kids = self._served(pool)
        for child in kids:
            if child.doorbell is None:
                record = self.stores.state.get_runner(child.id)
                child.doorbell = _address(record.doorbell) if record is not None and record.doorbell else None
                if child.doorbell is None:
                    continue
            try:
                self.bell.sendto(b"w", child.doorbell)
            except OSError:
                pass
        if kids:
            self._poke(pool)

    def look(self, pool: str) -> None:
        """`wake` without the doorbells: a create of another API process, which rang them itself
        (ForwardedWake)."""
        if self._served(pool):
            self._poke(pool)

    def _served(self, pool: str) -> list[Child]:
        """The pool's runners, if one of them lives; else none, and a full tick at once (it boots one)."""
        with self.lock:
            kids = [c for c in self.children.values() if c.pool == pool]
        if any(child.proc.poll() is None for child in kids):
            return kids
        self.tick_now = True
        self.wakeup.set()
        return []

    def _poke(self, pool: str) -> None:
        now = time.monotonic()
        if now - self.poked.get(pool, 0.0) >= POKE_EVERY_S:
            self.poked[pool] = now
            self.poke.add(pool)
            self.wakeup.set()

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> ProcessDispatcher:
        self.recover()
        # The thread that spawns runners must live as long as they do (PR_SET_PDEATHSIG is tied to
        # it): it also stops them (_drain), and only then ends.
        self.thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)
        self.thread.start()
        if self.wake_address:
            ear = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                ear.bind(self.wake_address)
            except OSError as exc:  # another stack's dispatcher on this database: it hears them
                log.warning("not hearing the other API processes' creates (%s): the tick finds their work", exc)
                ear.close()
            else:
                threading.Thread(target=self._hear, args=(ear,), name="dispatcher-wakes", daemon=True).start()
        return self

    def _hear(self, ear: socket.socket) -> None:
        """The creates of the API's other processes (ForwardedWake): a pool name, after `+` when the
        sender rang the pool's runners itself."""
        ear.settimeout(0.5)
        while not self.stopped.is_set():
            try:
                data = ear.recv(256)
            except TimeoutError:
                continue
            except OSError:
                return
            rang = data.startswith(b"+")  # the sender rang the pool's runners (else: ring them)
            pool = data[1:].decode("ascii", "replace") if rang else data.decode("ascii", "replace")
            if pools.parse(pool) is None:  # a datagram only asks for a look; anything else is dropped
                continue
            if rang:
                self.look(pool)
            else:
                self.wake(pool)
        ear.close()

    def stop(self, grace: float | None = None) -> None:
        """Stop every runner and return once none is left: they stop taking work, in-flight
        predictions get `grace` seconds to finish (then they are failed with a reason), and a
        runner still there after that is killed. `hurry()` (a second Ctrl-C) kills them at once."""
        if grace is not None:
            self.grace = grace
        self.stopped.set()
        self.wakeup.set()
        if self.thread is None:
            self._drain()
        else:
            self.thread.join()

    def hurry(self) -> None:
        """Stop now: kill the runners, fail what they were running (a second Ctrl-C)."""
        self.hurried.set()

    def recover(self) -> None:
        """At start: runners of an earlier run of this stack are gone (they die with it). Fail the
        predictions they were running, forget them, and make the jobs they had claimed visible
        again at once (their predictions, still `starting`, run now instead of after a lease)."""
        reason = STOPPED_EARLIER
        for record in self.stores.state.list_runners():
            for prediction_id in record.in_flight:
                fail_if_held(self.stores, prediction_id, record.id, reason)
            self.stores.state.delete_runner(record.id)
        for row in self.db.read("SELECT id, data FROM predictions WHERE status = ?", (Status.PROCESSING,)):
            runner_id = json.loads(row["data"]).get("runner_id")
            if runner_id and runner_id not in self.children:
                fail_if_held(self.stores, row["id"], runner_id, reason)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE jobs SET visible_at = ? WHERE visible_at > ?",
                (epoch(self.stores.clock), epoch(self.stores.clock)),
            )

    def _drain(self) -> None:
        """Runs in the dispatcher's thread once stopped (see start)."""
        with self.lock:
            children = list(self.children.values())
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGINT)  # runner: "the platform stops" (see gpu_runner)
        # a runner fails what is left after `grace`, stops its cog server (3 s) and exits
        deadline = time.monotonic() + self.grace + 15
        while (
            any(c.proc.poll() is None for c in children) and time.monotonic() < deadline and not self.hurried.is_set()
        ):
            self.hurried.wait(0.1)
        at_once = self.hurried.is_set()
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()  # its cog server and worker die with it (PR_SET_PDEATHSIG)
            child.proc.wait()
            self._reap(child, child.proc.returncode, reason=STOPPED_AT_ONCE if at_once else STOPPED)

    # --- the loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        """A full tick (`reconcile`) every `tick` seconds, and whenever a create wakes the loop for
        a pool without a live runner; between them, a look at the pools creates poked (`scale`)."""
        due = 0.0
        while not self.stopped.is_set():
            try:
                if time.monotonic() >= due or self.tick_now or not self.poke:
                    due = time.monotonic() + self.tick
                    self.tick_now = False
                    self.poke.clear()
                    self.reconcile()
                else:
                    while self.poke:
                        self.scale(self.poke.pop(), time.monotonic())
            except Exception:  # noqa: BLE001 - the dispatcher must keep running
                log.exception("dispatcher tick failed")
            self.wakeup.wait(max(0.0, due - time.monotonic()))
            self.wakeup.clear()
        self._drain()

    def pools_with_work(self) -> list[str]:
        rows = self.db.read("SELECT DISTINCT pool FROM jobs WHERE visible_at <= ?", (epoch(self.stores.clock),))
        return [r["pool"] for r in rows]

    def deployment_pools(self) -> dict[str, tuple[int, int]]:
        """Each deployment's current pool (cogplane.domain.pools) -> (min, max instances).
        A local adapter: it reads SQLite directly (deployments are few)."""
        found: dict[str, tuple[int, int]] = {}
        for row in self.db.read("SELECT data FROM deployments"):
            d = json.loads(row["data"])
            found[pools.for_deployment(d["owner"], d["name"], d["version"])] = (
                int(d.get("min_instances") or 0),
                int(d.get("max_instances") or 1),
            )
        return found

    def warm_pools(self) -> dict[str, int]:
        """Pools that must keep runners even without work: deployments' min_instances."""
        return {pool: low for pool, (low, _) in self.deployment_pools().items() if low > 0}

    def reconcile(self) -> None:
        with self.lock:
            for child in list(self.children.values()):
                code = child.proc.poll()
                if code is not None:
                    self._reap(child, code)
        now = time.monotonic()
        self.deployments = self.deployment_pools()
        warm = {pool: low for pool, (low, _) in self.deployments.items() if low > 0}
        self.retire_warm(warm)
        for pool in set(self.pools_with_work()) | set(warm):
            self.scale(pool, now)

    def scale(self, pool: str, now: float) -> None:
        """One pool: keep its warm runners, boot one for queued work, add one while a backlog
        persists (a deployment's settings as the last full tick read them)."""
        deployments = self.deployments
        until, _ = self.backoff.get(pool, (0.0, 0.0))
        if until > now:
            return
        depth = self.stores.queue.depth(pool)
        with self.lock:
            kids = [c for c in self.children.values() if c.pool == pool and c.proc.poll() is None]
        # a deployment's pool is capped by its max_instances; a version's by the machine setting
        limit = deployments[pool][1] if pool in deployments else self.max_per_pool
        want_warm = deployments[pool][0] if pool in deployments else 0
        if len([k for k in kids if k.keep_warm]) < want_warm and len(kids) < max(limit, want_warm):
            self.spawn(pool, keep_warm=True)
            return
        if depth <= 0:
            self.backlog_ticks.pop(pool, None)
            return
        if not kids:
            self.spawn(pool)  # a cold boot
            return
        # The backlog persists while every runner is busy: add one, up to the pool's max.
        ticks = self.backlog_ticks.get(pool, 0) + 1
        self.backlog_ticks[pool] = ticks
        booting = any(now - k.started < 2.0 for k in kids)
        if ticks >= 4 and len(kids) < limit and not booting:
            self.backlog_ticks[pool] = 0
            self.spawn(pool)

    def retire_warm(self, warm: dict[str, int]) -> None:
        """Warm runners beyond their pool's min_instances (a PATCH to a new version, a lower
        min, a deleted deployment) get SIGTERM: they finish in-flight work and exit."""
        with self.lock:
            by_pool: dict[str, list[Child]] = {}
            for child in self.children.values():
                if child.keep_warm and child.proc.poll() is None and not child.retiring:
                    by_pool.setdefault(child.pool, []).append(child)
        for pool, kids in by_pool.items():
            for child in kids[warm.get(pool, 0) :]:
                log.info("retiring warm runner %s of pool %s", child.id, pool)
                child.retiring = True
                child.proc.send_signal(signal.SIGTERM)

    def spawn(self, pool: str, *, keep_warm: bool = False) -> Child:
        runner_id = "r-" + uuid.uuid4().hex[:12]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "gpu_runner",
            "--pool",
            pool,
            "--runner-id",
            runner_id,
            "--spawned-at",
            repr(time.time()),
            "--idle-timeout",
            str(self.idle_timeout),
            "--stop-grace",
            repr(self.grace),
        ]
        if keep_warm:
            cmd.append("--keep-warm")
        env = {**os.environ, **self.env}
        with open(self.log_dir / f"{runner_id}.log", "ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - argv list (no shell): this interpreter, -m gpu_runner, our flags
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
                cwd=str(Path(__file__).resolve().parents[3]),
            )
        child = Child(id=runner_id, pool=pool, proc=proc, keep_warm=keep_warm)
        with self.lock:
            self.children[runner_id] = child
        log.info("started runner %s for pool %s (pid %s)", runner_id, pool, proc.pid)
        return child

    def start_problem(self, pool: str) -> str | None:
        """Why the pool has no live runner (for a prediction that did not start in time); None
        while a runner process of the pool is alive (starting up)."""
        with self.lock:
            if any(c.pool == pool and c.proc.poll() is None for c in self.children.values()):
                return None
        if pool in self.last_exit:
            runner_id, code = self.last_exit[pool]
            return f"its runner {runner_id} exited with code {code} (log: {self.log_dir / (runner_id + '.log')})."
        return "no runner was started for its pool (the dispatcher is stopped or at its limit)."

    def _reap(self, child: Child, code: int | None, reason: str | None = None) -> None:
        """A runner exited: fail what it was running, forget it, back off on setup failures."""
        self.children.pop(child.id, None)
        self.last_exit[child.pool] = (child.id, code)
        state = self.stores.state
        record = state.get_runner(child.id)
        reason = reason or (
            f"The runner serving this prediction stopped unexpectedly (exit code {code})."
            if code not in (0, EXIT_SETUP_FAILED)
            else "The runner stopped before the prediction finished."
        )
        held = set(record.in_flight) if record else set()
        # also what it took since its last heartbeat: running predictions that name it (an index)
        for row in self.db.read("SELECT id, data FROM predictions WHERE status = ?", (Status.PROCESSING,)):
            if json.loads(row["data"]).get("runner_id") == child.id:
                held.add(row["id"])
        for prediction_id in held:
            fail_if_held(self.stores, prediction_id, child.id, reason)
        if record is not None:
            state.delete_runner(child.id)
        if code == EXIT_SETUP_FAILED:
            _, delay = self.backoff.get(child.pool, (0.0, 5.0))
            delay = min(delay * 2, 300.0)
            self.backoff[child.pool] = (time.monotonic() + delay, delay)
            log.warning("pool %s failed setup; backing off %.0f s", child.pool, delay)
        elif code not in (0, None) and code != -signal.SIGTERM:
            self.backoff[child.pool] = (time.monotonic() + 1.0, 1.0)
        else:
            self.backoff.pop(child.pool, None)
        if self.on_exit:
            self.on_exit(child, code)


def fail_if_held(stores: Stores, prediction_id: str, runner_id: str, reason: str) -> bool:
    """Fail a processing prediction if (and only if) this runner holds it."""
    prediction = stores.state.get_prediction(prediction_id)
    if prediction is None or prediction.status != Status.PROCESSING or prediction.runner_id != runner_id:
        return False
    try:
        transitions.fail(reason, now=stores.clock.now(), from_=[Status.PROCESSING]).apply(stores.state, prediction_id)
        return True
    except (Conflict, NotFound):
        return False
