"""The API: one FastAPI app for uvicorn (single machine) and Lambda (through Mangum)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from cogplane.settings import Settings
from cogplane.wiring import Services, build
from functions.api import errors
from functions.api.routers import (
    admin,
    collections,
    deployments,
    files,
    misc,
    models,
    predictions,
    streams,
    trainings,
    uploads,
)
from functions.api.web.router import router as web_router
from functions.api.web.teams import router as teams_router

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RateLimitHeaders:
    """Adds the caller's rate-limit headers (what its bucket holds after this request, put in the
    request state by the authentication dependency) to the response (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = (scope.get("state") or {}).get("ratelimit_headers")
                if extra:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    message["headers"] = list(message.get("headers", [])) + [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in extra.items()
                        if k.lower().encode("latin-1") not in present
                    ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(services: Services | None = None, settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="cogplane", version="0.1.0", description="A self-hosted, Replicate-compatible API.")
    app.state.services = services or build(settings or Settings())
    errors.install(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness for process managers (the stream function's Lambda Web Adapter readiness
        check): no auth, no state-store call."""
        return {"status": "ok"}

    app.include_router(streams.router)  # before files: /v1/files/streams/{id}
    app.include_router(collections.router)
    app.include_router(predictions.router)
    app.include_router(models.router)
    app.include_router(trainings.router)
    app.include_router(deployments.router)
    app.include_router(files.router)
    app.include_router(uploads.router)
    app.include_router(misc.router)
    app.include_router(admin.router)
    app.include_router(teams_router)  # /account/...: before the web UI's `/{owner}/{name}`
    app.include_router(web_router)  # the web UI; last: `/{owner}/{name}` matches broadly
    app.add_middleware(RateLimitHeaders)
    return app
