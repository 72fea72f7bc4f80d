"""Lambda entry point: the same FastAPI app through Mangum (lifespan off)."""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mangum import Mangum

from cogplane.processes import settle_heap

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import ASGIApp, Receive, Scope, Send

_handler = None


@contextmanager
def _without_pydantic_v1() -> Iterator[None]:
    """FastAPI checks the types of every route it makes against pydantic.v1's BaseModel, to refuse
    v1 models, and imports pydantic.v1 for that check: about 6% of this module's import (Lambda
    init) for models the app has none of. While the routes are made, `pydantic.v1` is marked absent
    (an ImportError, which FastAPI reads as "not a v1 model"); afterwards it imports as usual. A
    process that already has it (a test session with the replicate client) is left as it is."""
    if "pydantic.v1" in sys.modules:
        yield
        return
    sys.modules["pydantic.v1"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if "pydantic.v1" in sys.modules and sys.modules["pydantic.v1"] is None:
            del sys.modules["pydantic.v1"]


with _without_pydantic_v1():  # the routers make their routes as they are imported
    from functions.api.app import create_app


def base_path(event: dict[str, Any]) -> str:
    """What API Gateway hides from the app's path: the stage (`/api`) or, under a custom domain, the
    base path mapping. REST events give both the path the app routes on (`path`) and the one the
    client asked for (`requestContext.path`); the difference is the prefix every link needs."""
    requested = (event.get("requestContext") or {}).get("path") or ""
    path = event.get("path") or ""
    if requested and path and requested != path and requested.endswith(path):
        return requested[: len(requested) - len(path)].rstrip("/")
    return ""


class BasePath:
    """Pure ASGI: sets `root_path` to the event's base path, so links the app builds (the web UI's
    `/static/...`, `/signin`, redirects) carry it; routing still sees the plain path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = base_path(scope.get("aws.event") or {})
            if prefix:
                scope = {**scope, "root_path": prefix}
        await self.app(scope, receive, send)


_PREDICTION_PATH = re.compile(r"/(?:v1/predictions|v1/trainings|predictions|trainings)/([a-z0-9]{8,64})(?:/|$)")


class PredictionIdInLogs:
    """Pure ASGI: a request about one prediction (`/v1/predictions/{id}...`) logs with its id; a
    create logs with the new one from where the service makes it (cogplane.logs.set_prediction)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from cogplane.logs import prediction_context

        match = _PREDICTION_PATH.search(scope.get("path") or "") if scope["type"] == "http" else None
        with prediction_context(match.group(1) if match else None):
            await self.app(scope, receive, send)


def _build() -> Mangum:
    """What the first event adds to init: JSON logs, the app and its services (bench/lambda_init.py
    reports it apart from the import)."""
    from cogplane.logs import setup_json_logging

    setup_json_logging("api")
    with _without_pydantic_v1():  # create_app makes routes too (/healthz)
        app = create_app()
    return Mangum(BasePath(PredictionIdInLogs(app)), lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    if _handler is None:  # built once per execution environment, on the first event
        _handler = _build()
        settle_heap(collect=False)  # the app's objects: never walked by later full collections
    return _handler(event, context)
