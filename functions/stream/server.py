"""The stream function's web server: the same FastAPI app (functions.api.app) under uvicorn, for
the Lambda Web Adapter. Started by functions/stream/run.sh; runs anywhere (`python -m ...`).

Only the SSE routes, the signed download URLs of files (`/v1/blobs/…`, checked by their
signature) and the readiness check are served: the Function URL in front of it has no
authorisation of its own (stream URLs are capability URLs) and no API Gateway throttling, and the
function may only read the table, so every other route answers 404 here instead of reaching the
app. The API itself stays behind API Gateway.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING

import uvicorn

from cogplane.adapters.aws.signed import REQUEST_BASE
from cogplane.logs import setup_json_logging
from cogplane.settings import Settings

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

HOST = "127.0.0.1"  # only the adapter, in the same execution environment, talks to it
DEFAULT_PORT = 8080  # the adapter's default (AWS_LWA_PORT, falling back to PORT)
HEALTH_PATH = "/healthz"
# the SSE routes, and the platform-signed download URLs of output files (cogplane.adapters.aws.signed)
STREAM_PATHS = re.compile(r"^/v1/(?:(?:streams/[^/]+|files/streams/[^/]+)/?$|blobs/.+)")
_NOT_FOUND = json.dumps(
    {
        "type": "about:blank",
        "title": "Not found",
        "status": 404,
        "detail": "This endpoint serves prediction streams only.",
    }
).encode()


def origin(scope: Scope) -> str:
    """The Function URL this request came through (the adapter forwards its Host and
    X-Forwarded-Proto), e.g. https://abc.lambda-url.us-east-1.on.aws."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    host = headers.get("x-forwarded-host") or headers.get("host", "")
    proto = headers.get("x-forwarded-proto") or scope.get("scheme", "http")
    return f"{proto}://{host}" if host else ""


class StreamRoutesOnly:
    """Pure ASGI: GET/HEAD of the stream routes and the health check reach the app; nothing else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            REQUEST_BASE.set(origin(scope))  # where download URLs signed here are served
            path = scope.get("path", "")
            allowed = scope.get("method") in ("GET", "HEAD") and (
                path == HEALTH_PATH or STREAM_PATHS.match(path) is not None
            )
            if not allowed:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [
                            (b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(_NOT_FOUND)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _NOT_FOUND})
                return
        await self.app(scope, receive, send)


def create_stream_app() -> StreamRoutesOnly:
    """uvicorn factory: the API app (functions.api.app.create_app), restricted to the streams."""
    from functions.api.app import create_app

    return StreamRoutesOnly(create_app())


def port(settings: Settings) -> int:
    return settings.lwa_port or settings.port or DEFAULT_PORT


def main() -> None:
    settings = Settings()
    # JSON lines like the other functions' (cogplane.logs): uvicorn's own loggers propagate to the
    # root's JSON handler (log_config=None), and a stream's lines carry its prediction's id (the
    # route sets it once the token is opened: the path holds a token, not the id)
    level = logging.getLevelName(settings.log_level.upper())
    setup_json_logging("stream", level=level if isinstance(level, int) else logging.WARNING)
    uvicorn.run(
        "functions.stream.server:create_stream_app",
        factory=True,
        host=HOST,
        port=port(settings),
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        # One request at a time per Lambda execution environment; keep-alive from the adapter only.
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()
