"""`make up`: the whole platform on one machine, in the foreground; Ctrl-C (or SIGTERM) stops it
gracefully, a second Ctrl-C at once (see Stopper)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from pydantic import ValidationError

from cogplane.processes import settle_heap
from cogplane.settings import Settings
from cogplane.wiring import build_local
from local.bootstrap import ensure_token, push_examples, push_platform_models
from local.worker import REFUSING, ApiWorkers

if TYPE_CHECKING:
    from types import FrameType

    from cogplane.adapters.local.dispatcher import ProcessDispatcher
    from cogplane.tls import TlsFiles
    from cogplane.wiring import Services

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


LOOPBACK = "127.0.0.0/8,::1/128,localhost"
HOST = "127.0.0.1"


def trust_help(ca: str | None) -> str:
    if not ca:
        return "  (plain HTTP: COGPLANE_TLS=0; file outputs are http: URLs, not FileOutput objects)\n"
    return f"""  HTTPS with a local CA made for this install. Trust it in your clients:
    Python:  export SSL_CERT_FILE={ca}    (replicate 1.0.7 ignores Client(verify=...): see the README)
    node:    export NODE_EXTRA_CA_CERTS={ca}
    curl:    curl --cacert {ca} ...
"""


def banner(
    url: str, token: str, user: str, examples: list, ca: str | None = None, home: Path = Path(".cogplane")
) -> str:
    curl = f"curl --cacert {ca}" if ca else "curl"
    models = "\n".join(
        f"    {r.model:<28} {'ready' if r.version_id else 'NOT PUSHED: ' + (r.error or '')}" for r in examples
    )
    return f"""
cogplane is up at {url}

  user:   {user}
  token:  {token}   (also in {home}/token)

  models:
{models or "    (none)"}

  Web UI: open {url}/ in a browser and sign in with the token above.

{trust_help(ca)}
  Try it with curl:
    {curl} -s -X POST {url}/v1/models/examples/hello/predictions \\
      -H "Authorization: Bearer {token}" -H "Content-Type: application/json" \\
      -H "Prefer: wait" -d '{{"input": {{"prompt": "world"}}}}'

  Or with the replicate Python client:
    {f"SSL_CERT_FILE={ca} " if ca else ""}REPLICATE_BASE_URL={url} REPLICATE_API_TOKEN={token} \\
      python -c 'import replicate; print(replicate.run("examples/hello", input={{"prompt": "world"}}))'

  Push your own model:   .venv/bin/cogplane push path/to/model {user}/my-model

Press Ctrl-C to stop.
"""


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: Stopper decides when the server ends (after the
    runners have drained), and nothing re-raises the signal afterwards (uvicorn does, which kills
    the process before its clean-up)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_config(app: object, port: int, tls: TlsFiles | None) -> uvicorn.Config:
    """How every API process of `make up` serves the app."""
    # h11: the method `QUERY` (search) must reach the app; h11 accepts any token as a method.
    # The graceful part of a stop is the runners' drain (Stopper); the server only ends after it,
    # so it waits little for open connections (a polling client keeps one).
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=HOST,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        server_header=False,  # no `server: uvicorn` on every answer (what runs here is nobody's business)
        http="h11",
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )


class Stopper:
    """SIGTERM/SIGINT: stop taking work (new predictions answer 503), let in-flight ones finish
    within the grace period (then fail them with a reason), stop every runner, then end the HTTP
    server (which serves polls meanwhile). A second signal, a second or more after the first,
    stops at once. (GNU make forwards a SIGTERM that a group kill already delivered: a repeat
    within the second is that echo, not a second request.)"""

    ECHO = 1.0

    def __init__(
        self,
        server: uvicorn.Server,
        dispatcher: ProcessDispatcher,
        services: Services,
        grace: float,
        workers: ApiWorkers | None = None,
    ) -> None:
        self.server = server
        self.workers = workers
        self.dispatcher = dispatcher
        self.services = services
        self.grace = grace
        self.first: float | None = None
        self.hurried = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
            self.services.predictions.refusing = REFUSING
            if self.workers is not None:
                self.workers.refuse()
            print(
                f"\nStopping (Ctrl-C again to stop at once): no new predictions; in-flight ones get "
                f"{self.grace:g} s to finish ...",
                flush=True,
            )
            threading.Thread(target=self._drain, name="stopper", daemon=True).start()
        elif not self.hurried and now - self.first >= self.ECHO:
            self.hurried = True
            print("Stopping at once: in-flight predictions are failed ...", flush=True)
            self.dispatcher.hurry()

    def _drain(self) -> None:
        try:
            self.dispatcher.stop(self.grace)
        finally:
            self.server.should_exit = True


def setting_problems(exc: ValidationError) -> str:
    """A pydantic ValidationError of Settings as the variables to fix (COGPLANE_X, or PORT)."""

    def variable(loc: tuple[int | str, ...]) -> str:
        name = ".".join(str(p) for p in loc)
        return name if name.isupper() else f"COGPLANE_{name.upper()}"

    return "; ".join(f"{variable(e['loc'])}: {e['msg']}" for e in exc.errors())


def _fail(message: str) -> int:
    print(f"cogplane: {message}", file=sys.stderr)
    return 2


def serving(server: uvicorn.Server) -> bool:
    """Wait until the server listens (True) or is stopped first (False)."""
    while not server.started and not server.should_exit:
        time.sleep(0.02)
    return server.started


def _announce(server: uvicorn.Server, message: str) -> None:
    """Print the banner once the server listens (nothing if it stops first)."""
    if serving(server):
        print(message, flush=True)


def run() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    try:
        settings = Settings()
    except ValidationError as exc:
        return _fail(f"bad setting: {setting_problems(exc)}")
    port = settings.port or 8000
    if settings.token is not None and len(settings.token) < 16:
        return _fail(
            "COGPLANE_TOKEN must be at least 16 characters long (or unset it: a token is "
            f"made and kept in {settings.home}/token)."
        )
    host = HOST
    from cogplane.homedir import secure_home

    secure_home(settings.home)  # 0700, state files 0600 (also a home made by an older version)
    tls = None
    if settings.tls:
        from cogplane.tls import ensure_certificates

        tls = ensure_certificates(settings.home)
    if not settings.public_url:
        settings.public_url = f"{'https' if tls else 'http'}://{host}:{port}"
    if "allow_networks" not in settings.model_fields_set:  # not given (COGPLANE_ALLOW_NETWORKS)
        settings.allow_networks = LOOPBACK  # one machine: inputs from local servers are the point

    from cogplane.adapters.local.dispatcher import LocalStores, ProcessDispatcher, wake_address
    from cogplane.adapters.local.sqlite import Database, SqliteJobQueue, SqliteStateStore
    from cogplane.clock import clock_for
    from cogplane.domain.errors import DomainError
    from functions.api.app import create_app

    env = {
        "COGPLANE_HOME": str(settings.home.resolve()),
        "COGPLANE_PUBLIC_URL": settings.public_url,
        "COGPLANE_ALLOW_NETWORKS": settings.allow_networks,
    }
    if tls:
        env["COGPLANE_CA"] = str(tls.ca.resolve())
    # The dispatcher (runner processes) works over the same database as the services, and they get
    # it when they are built (a new prediction wakes its pool).
    clock = clock_for(settings)
    db = Database(str(settings.db_path))
    dispatcher = ProcessDispatcher(
        db,
        LocalStores(state=SqliteStateStore(db, clock), queue=SqliteJobQueue(db, clock), clock=clock),
        max_per_pool=settings.max_runners,
        idle_timeout=settings.idle_timeout,
        log_dir=settings.home / "logs",
        env=env,
        grace=settings.stop_grace,
        wake_address=wake_address(str(settings.db_path)) if settings.api_workers > 1 else None,
    )
    services = build_local(settings, base_url=settings.public_url, clock=clock, dispatcher=dispatcher)
    from cogplane.adapters.local.completions import notify_dir, start_hub

    # `Prefer: wait` sleeps until the runner that ends a prediction says so (no polling; None: polls)
    completions = start_hub(notify_dir(str(settings.db_path)) or str(settings.home / "notify"))
    services.predictions.completions = completions
    services.accounts.ensure_account(settings.user, admin=True)  # the first user of an install
    try:
        token = ensure_token(services, settings.user, settings.home, settings.token)
    except DomainError as exc:
        return _fail(f"COGPLANE_TOKEN: {exc.detail}")
    examples_dir = settings.examples or EXAMPLES
    results = push_examples(services, examples_dir) if examples_dir.is_dir() else []
    for result in push_platform_models(services):
        if result.error:
            print(f"warning: could not push the platform model {result.model}: {result.error}", flush=True)

    app = create_app(services)
    config = server_config(app, port, tls)
    server = Server(config)
    # More API processes on the same socket (local/worker.py); this one keeps the dispatcher.
    sockets = [config.bind_socket()] if settings.api_workers > 1 else None
    workers = ApiWorkers(sockets[0] if sockets else None, settings.api_workers - 1, {**os.environ, **env})
    ca = str(tls.ca.resolve()) if tls else None
    message = banner(settings.public_url, token, settings.user, results, ca, home=settings.home)
    threading.Thread(target=_announce, args=(server, message), daemon=True).start()
    stopper = Stopper(server, dispatcher, services, settings.stop_grace, workers)
    stopper.install()
    dispatcher.start()
    from local.pumps import Pumps

    pumps = Pumps(services, base_url=settings.public_url).start()
    workers.start()
    settle_heap()  # loaded and built: later full collections walk only what traffic makes
    try:
        server.run(sockets)  # until Stopper has stopped the runners (or the server could not start)
    finally:
        if stopper.first is None:
            print("Stopping runners ...", flush=True)
        workers.refuse()
        dispatcher.stop(settings.stop_grace)  # at once when Stopper already did it
        workers.stop()
        pumps.stop()
        if completions is not None:
            completions.stop()
    if stopper.first is not None:
        print("Stopped.", flush=True)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(run())
