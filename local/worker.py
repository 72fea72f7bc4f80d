"""More HTTP processes for the API of `make up` (COGPLANE_API_WORKERS > 1).

One API process (its event loop, TLS, h11, the routes) serves about 300 predictions/s on one core;
past that, cores stay idle while clients wait. The first process (local/stack.py) binds the
listening socket and runs what there must be one of: the dispatcher (runner processes), the pumps
(webhooks, timers), the drain on a stop. `ApiWorkers` starts the others with the same socket
(`python -m local.worker FD`): the kernel hands each new connection to one process, and each
serves the same app over the same state, as Lambda's instances do deployed. Between them:

- **state**: the SQLite database and its WAL (safe across processes), the rate-limit file, the
  blob folder, the install's secrets under COGPLANE_HOME;
- **a prediction's end**: every API process listens for completion notices (completions.py);
- **a create's wake-up**: a worker rings the pool's runners itself and tells the dispatcher
  (`ForwardedWake`: cold boots, scale-up);
- **a stop**: the first process forwards it (SIGTERM: refuse new predictions and serve polls while
  the runners drain; SIGINT: end), and a worker dies with it if it is killed (PR_SET_PDEATHSIG).
  Workers run in a session of their own, so a terminal's Ctrl-C reaches the first process only.

A worker that exits on its own is started again (after a second, not in a loop faster than that).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

    import uvicorn

log = logging.getLogger("cogplane.api")

REPO = Path(__file__).resolve().parents[1]
RESTART_AFTER_S = 1.0
READY_TIMEOUT_S = 60.0
REFUSING = "cogplane is shutting down and takes no new predictions; try again once it is back."


class ApiWorkers:
    """The first process's side: `count` more API processes on `sock`, kept running until `stop()`.
    They are started (and stopped) by one thread of their own, which lives as long as they do
    (PR_SET_PDEATHSIG is tied to the thread that started a child)."""

    def __init__(self, sock: socket.socket | None, count: int, env: dict[str, str]) -> None:
        self.sock = sock
        self.count = count
        self.env = env
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.grace = 5.0

    def start(self) -> ApiWorkers:
        """Start them; returns once each serves (or could not start: then it is tried again)."""
        if self.sock is None or self.count < 1:
            return self  # one API process: nothing to start
        started = threading.Event()
        self.thread = threading.Thread(target=self._keep, args=(started,), name="api-workers", daemon=True)
        self.thread.start()
        started.wait(READY_TIMEOUT_S + 5)
        return self

    def refuse(self) -> None:
        """A stop began: new predictions are refused everywhere; polls are still served."""
        self._signal(signal.SIGTERM)

    def stop(self) -> None:
        """End every worker (SIGINT: their server ends; killed after `grace`); returns once none is left."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()

    def _signal(self, signum: int) -> None:
        with self.lock:
            procs = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in procs:
            try:
                proc.send_signal(signum)
            except OSError:
                pass

    def _spawn(self) -> tuple[subprocess.Popen, int]:
        """A worker, and the pipe where it says it serves (one byte; nothing if it died first)."""
        from cogplane.processes import pdeathsig_preexec

        if self.sock is None:
            raise RuntimeError("no listening socket to share")
        fd = self.sock.fileno()
        ready, told = os.pipe()
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
                [sys.executable, "-m", "local.worker", str(fd), str(told)],
                cwd=REPO,
                env=self.env,
                pass_fds=(fd, told),
                start_new_session=True,  # a terminal's Ctrl-C goes to the first process, which forwards it
                preexec_fn=pdeathsig_preexec(),  # noqa: PLW1509 - prctl only: no locks taken in the child
            )
        except BaseException:
            os.close(ready)
            raise
        finally:
            os.close(told)
        return proc, ready

    def _keep(self, started: threading.Event) -> None:
        last: list[float] = [0.0] * self.count
        try:
            while not self.stopping.is_set():
                waiting = []
                for i in range(self.count):
                    proc = self.procs[i]
                    if proc is not None and proc.poll() is None:
                        continue
                    if proc is not None:
                        log.warning("API worker %s exited (%s); starting another", proc.pid, proc.returncode)
                    if time.monotonic() - last[i] < RESTART_AFTER_S:
                        continue
                    last[i] = time.monotonic()
                    proc, ready = self._spawn()
                    with self.lock:
                        self.procs[i] = proc
                    waiting.append(ready)
                _await_ready(waiting)
                started.set()
                self.stopping.wait(0.5)
        finally:
            started.set()
            self._end()

    def _end(self) -> None:
        self._signal(signal.SIGINT)
        deadline = time.monotonic() + self.grace
        with self.lock:
            procs = [p for p in self.procs if p is not None]
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _await_ready(pipes: list[int]) -> None:
    """Until each new worker serves or has died (its pipe's byte or end), READY_TIMEOUT_S at most."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        for fd in pipes:
            readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not readable or not os.read(fd, 1):
                log.warning("an API worker did not start serving; it is tried again")
    finally:
        for fd in pipes:
            os.close(fd)


def _tell_when_serving(server: uvicorn.Server, fd: int) -> None:
    """The worker's side of `_await_ready`."""
    from local.stack import serving

    try:
        if serving(server):
            os.write(fd, b"1")
    except OSError:
        pass  # the first process stopped listening: nobody to tell
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """`python -m local.worker FD [READY_FD]`: serve the API on the inherited listening socket FD
    until SIGINT (SIGTERM: refuse new predictions, keep serving polls); write one byte to READY_FD
    once serving."""
    from pydantic import ValidationError

    from cogplane.adapters.local.completions import notify_dir, start_hub
    from cogplane.adapters.local.dispatcher import ForwardedWake, wake_address
    from cogplane.adapters.local.sqlite import Database, SqliteStateStore
    from cogplane.clock import clock_for
    from cogplane.processes import settle_heap
    from cogplane.settings import Settings
    from cogplane.wiring import build_local
    from functions.api.app import create_app
    from local.stack import Server, server_config, setting_problems

    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"cogplane: bad setting: {setting_problems(exc)}", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(args[0]))
    tls = None
    if settings.tls:
        from cogplane.tls import ensure_certificates

        tls = ensure_certificates(settings.home)  # made by the first process: read here
    clock = clock_for(settings)
    state = SqliteStateStore(Database(str(settings.db_path)), clock)
    wake = ForwardedWake(state, wake_address(str(settings.db_path)))
    services = build_local(settings, base_url=settings.public_url, clock=clock, dispatcher=wake)
    completions = start_hub(notify_dir(str(settings.db_path)) or str(settings.home / "notify"))
    services.predictions.completions = completions
    server = Server(server_config(create_app(services), sock.getsockname()[1], tls))

    def refuse(_signum: int, _frame: FrameType | None) -> None:
        services.predictions.refusing = REFUSING

    def end(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, refuse)
    signal.signal(signal.SIGINT, end)
    if len(args) > 1:
        threading.Thread(target=_tell_when_serving, args=(server, int(args[1])), daemon=True).start()
    settle_heap()
    try:
        server.run(sockets=[sock])
    finally:
        if completions is not None:
            completions.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
