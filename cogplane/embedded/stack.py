"""`make up`: the whole platform on one machine, in the foreground; Ctrl-C stops everything."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import uvicorn

from cogplane.embedded.bootstrap import ensure_token, push_examples
from cogplane.settings import Settings
from cogplane.wiring import build_local

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


LOOPBACK = "127.0.0.0/8,::1/128,localhost"


def trust_help(ca: str | None) -> str:
    if not ca:
        return "  (plain HTTP: COGPLANE_TLS=0; file outputs are http: URLs, not FileOutput objects)\n"
    return f"""  HTTPS with a local CA made for this install. Trust it in your clients:
    Python:  export SSL_CERT_FILE={ca}    (replicate 1.0.7 ignores Client(verify=...): see the README)
    node:    export NODE_EXTRA_CA_CERTS={ca}
    curl:    curl --cacert {ca} ...
"""


def banner(url: str, token: str, user: str, examples: list, ca: str | None = None) -> str:
    curl = f"curl --cacert {ca}" if ca else "curl"
    models = "\n".join(
        f"    {r.model:<28} {'ready' if r.version_id else 'NOT PUSHED: ' + (r.error or '')}" for r in examples
    )
    return f"""
cogplane is up at {url}

  user:   {user}
  token:  {token}   (also in {os.environ.get('COGPLANE_HOME', '.cogplane')}/token)

  models:
{models or '    (none)'}

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


def run() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    port = int(os.environ.get("PORT", "8000"))
    host = "127.0.0.1"
    settings = Settings()
    from cogplane.homedir import secure_home

    secure_home(settings.home)  # 0700, state files 0600 (also a home made by an older version)
    tls = None
    if settings.tls:
        from cogplane.tls import ensure_certificates

        tls = ensure_certificates(settings.home)
    if not settings.public_url:
        settings.public_url = f"{'https' if tls else 'http'}://{host}:{port}"
    if "COGPLANE_ALLOW_NETWORKS" not in os.environ:
        settings.allow_networks = LOOPBACK  # one machine: inputs from local servers are the point

    from cogplane.adapters.local.dispatcher import ProcessDispatcher
    from cogplane.adapters.local.sqlite import Database
    from functions.api.app import create_app

    services = build_local(settings, base_url=settings.public_url)
    env = {"COGPLANE_HOME": str(settings.home.resolve()), "COGPLANE_PUBLIC_URL": settings.public_url,
           "COGPLANE_ALLOW_NETWORKS": settings.allow_networks}
    if tls:
        env["COGPLANE_CA"] = str(tls.ca.resolve())
    dispatcher = ProcessDispatcher(Database(str(settings.db_path)), services,
                                   max_per_pool=int(os.environ.get("COGPLANE_MAX_RUNNERS", "2")),
                                   idle_timeout=float(os.environ.get("COGPLANE_IDLE_TIMEOUT", "300")),
                                   log_dir=settings.home / "logs", env=env)
    services.dispatcher = dispatcher
    services.predictions.dispatcher = dispatcher
    services.accounts.ensure_account(settings.user, admin=True)  # the first user of an install
    token = ensure_token(services, settings.user, settings.home, settings.token)
    examples_dir = Path(os.environ.get("COGPLANE_EXAMPLES", str(EXAMPLES)))
    results = push_examples(services, examples_dir) if examples_dir.is_dir() else []

    app = create_app(services)
    ssl = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)} if tls else {}
    # h11: the method `QUERY` (search) must reach the app; h11 accepts any token as a method.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5, http="h11", **ssl)
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            print(banner(settings.public_url, token, settings.user, results,
                         str(tls.ca.resolve()) if tls else None), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    dispatcher.start()
    from cogplane.embedded.pumps import Pumps

    pumps = Pumps(services, base_url=settings.public_url).start()
    try:
        server.run()  # handles SIGINT/SIGTERM: stops accepting, finishes requests, returns
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; we are stopping anyway
        pass
    finally:
        print("Stopping runners ...", flush=True)
        dispatcher.stop()
        pumps.stop()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(run())
