"""Completion notices on one machine: the API learns that a prediction ended without polling.

A `Prefer: wait` create used to read the prediction every millisecond until a runner (another
process) had written its end: CPU in the API process for every waiting request, and up to a
millisecond of latency. Now the process that writes a terminal status (the SQLite state store, in
a runner or the API) sends the prediction id as one datagram to every listening API process, and a
waiting request wakes at once.

- Each listener (an API process: `CompletionHub`) binds a Linux abstract-namespace datagram socket
  (no path-length limit, nothing left on disk if it dies) and announces it with an empty file named
  after it in `<database>.notify/`. Writers list that folder and `sendto` each name (a few µs);
  a name nobody answers any more is removed.
- A notice carries no authority: it only says "read this prediction again". The waiter always
  re-reads the state and still re-reads every `FALLBACK_SECONDS` without a notice (a lost
  datagram, a writer on another machine), so correctness never depends on delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import select
import socket
import threading
from collections.abc import Iterator

log = logging.getLogger("cogplane.completions")

FALLBACK_SECONDS = 0.25  # re-read without a notice at least this often (safety net only)
_MAX_ID = 256
RECENT = 4096  # ids of the last notices kept, so a waiter that registers late still sees its own


def notify_dir(db_path: str) -> str | None:
    """Where listeners announce themselves for a database (None for an in-memory one)."""
    if not db_path or db_path == ":memory:":
        return None
    return os.path.abspath(db_path) + ".notify"


class CompletionNotifier:
    """The writer's side: tell every listening API process that a prediction ended."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def ended(self, prediction_id: str) -> None:
        if self.directory is None:
            return
        try:
            names = [e.name for e in os.scandir(self.directory) if e.name.startswith("cogplane-")]
        except OSError:  # no listener has ever started here
            return
        message = prediction_id.encode()[:_MAX_ID]
        with self._lock:
            if self._sock is not None and self._sock.fileno() == -1:
                self._sock = None
            sock = self._socket()
            for name in names:
                try:
                    sock.sendto(message, b"\0" + os.fsencode(name))  # any name on disk, UTF-8 or not
                except (ConnectionRefusedError, FileNotFoundError):  # that listener is gone
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.directory, name))
                except OSError:  # its buffer is full: the waiter's fallback read covers it
                    pass


def start_hub(directory: str) -> CompletionHub | None:
    """A started hub, or None where it cannot listen (its folder is a file, or unwritable): the
    API then polls the store (`PredictionService.wait`), as deployed, instead of not starting."""
    hub = CompletionHub(directory)
    try:
        return hub.start()
    except OSError as exc:
        log.warning("completion notices off (%s: %s); Prefer: wait polls the store", directory, exc)
        hub.stop()
        return None


class _Waiter:
    __slots__ = ("event", "loop", "future")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future | None = None


class CompletionHub:
    """The listener's side (one per API process): wakes the requests waiting on a prediction.

    Its socket is read by the API's event loop itself (`add_reader`, attached by the first async
    wait), so a notice wakes a waiting request with no thread in between: a listener thread cost
    a GIL hand-over and a loop wake-up (`call_soon_threadsafe`) per prediction. A thread reads it
    too once a waiter blocks a thread (`wait`: the safety checker's), or where no loop is attached;
    whichever takes a datagram wakes every waiter it names."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.name = f"cogplane-{os.getpid()}-{secrets.token_hex(6)}"
        self._waiters: dict[str, set[_Waiter]] = {}
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The ids of the last RECENT notices, oldest first: `watching` finds a notice that came
        # before it did (a waiter that knows the state it starts from need not read it first:
        # `PredictionService.wait_async`).
        self._recent: dict[str, None] = {}
        self.received = 0
        self.fallback_seconds = FALLBACK_SECONDS

    def start(self) -> CompletionHub:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(b"\0" + self.name.encode())
        sock.setblocking(False)
        self._sock = sock
        with open(os.path.join(self.directory, self.name), "w"):
            pass
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.directory, self.name))
        sock, self._sock = self._sock, None
        loop, self._loop = self._loop, None
        if sock is None:
            return
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                if _running_loop() is loop:
                    loop.remove_reader(sock.fileno())
                else:
                    loop.call_soon_threadsafe(_forget_reader, loop, sock)
                    return  # the loop closes it once the reader is off
        sock.close()

    # --- who reads the socket ---------------------------------------------------------------
    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the socket in `loop` from now on (the running loop of an async waiter)."""
        sock = self._sock
        if sock is None or self._loop is loop:
            return
        old = self._loop
        if old is not None and not old.is_closed() and old.is_running():
            return  # another live loop reads it; the waiter of this one is woken thread-safely
        self._loop = loop
        loop.add_reader(sock.fileno(), self._readable, loop)

    def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(_MAX_ID)
            except BlockingIOError:
                return
            except OSError:
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
                return
            self._received(data, loop)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and self._sock is not None:
                self._thread = threading.Thread(target=self._listen, name="completions", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                ready, _, _ = select.select([sock], [], [], 1.0)
                if not ready:
                    continue
                data = sock.recv(_MAX_ID)
            except BlockingIOError:  # the loop took it first
                continue
            except (OSError, ValueError):  # closed
                return
            self._received(data)

    def _received(self, data: bytes, in_loop: asyncio.AbstractEventLoop | None = None) -> None:
        """One datagram, from whichever reader took it: wake the waiters of the prediction it names."""
        if data:
            self.received += 1
            self._wake(data.decode(errors="replace"), in_loop)

    def _wake(self, prediction_id: str, in_loop: asyncio.AbstractEventLoop | None = None) -> None:
        with self._lock:
            if prediction_id not in self._recent:
                self._recent[prediction_id] = None
                if len(self._recent) > RECENT:
                    del self._recent[next(iter(self._recent))]
            waiters = list(self._waiters.get(prediction_id, ()))
        for waiter in waiters:
            waiter.event.set()
            if waiter.loop is not None and waiter.future is not None:
                if waiter.loop is in_loop:
                    _resolve(waiter.future)
                else:
                    waiter.loop.call_soon_threadsafe(_resolve, waiter.future)

    @contextlib.contextmanager
    def watching(self, prediction_id: str) -> Iterator[_Waiter]:
        """Register before reading the state (a notice in between is not lost). A notice for it
        among the last RECENT ones (it ended before this call) leaves the waiter woken at once."""
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault(prediction_id, set()).add(waiter)
            if prediction_id in self._recent:
                waiter.event.set()
        try:
            yield waiter
        finally:
            with self._lock:
                group = self._waiters.get(prediction_id)
                if group is not None:
                    group.discard(waiter)
                    if not group:
                        del self._waiters[prediction_id]

    def wait(self, waiter: _Waiter, timeout: float) -> bool:
        """Block until a notice (True) or `timeout` seconds (False)."""
        self._ensure_thread()
        woke = waiter.event.wait(max(0.0, timeout))
        waiter.event.clear()
        return woke

    async def wait_async(self, waiter: _Waiter, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        self._attach(loop)
        if waiter.event.is_set():
            waiter.event.clear()
            return True
        waiter.loop, waiter.future = loop, loop.create_future()
        if waiter.event.is_set():  # set between the check and the future
            waiter.event.clear()
            return True
        # A timer, not asyncio.wait_for(shield(...)): that made a task and a second future per wait
        timer = loop.call_later(max(0.0, timeout), _resolve, waiter.future, False)
        try:
            return bool(await waiter.future)
        finally:
            timer.cancel()
            waiter.future = None
            waiter.event.clear()


def _resolve(future: asyncio.Future, woke: bool = True) -> None:
    """A notice (True) or the timeout (False) ends the wait: whichever comes first."""
    if not future.done():
        future.set_result(woke)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _forget_reader(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    with contextlib.suppress(Exception):
        loop.remove_reader(sock.fileno())
    sock.close()
