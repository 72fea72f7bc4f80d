"""Request dependencies: services, the caller's account, the public base URL, JSON bodies."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.datastructures import Default, DefaultPlaceholder
from fastapi.routing import APIRoute

from cogplane.domain import strictjson
from cogplane.domain.entities import Account
from cogplane.services.ratelimits import headers_for
from cogplane.wiring import Services
from functions.api.errors import HTTPProblem

# The dependencies below that do no I/O, or only a few reads of the state store by key, are
# `async def`: FastAPI runs a plain `def` dependency in a worker thread, and each such hop costs the
# API process about 0.14 ms of CPU (5 of them made a third of a create's own CPU).


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def _kind(request: Request) -> str:
    """Which rate-limit bucket a request draws from: prediction/training creates, or the rest."""
    if request.method == "POST" and request.url.path.rstrip("/").endswith(("/predictions", "/trainings")):
        return "create"
    return "other"


def authenticate(request: Request, services: Services) -> Account:
    """The caller's account (401 without a valid token), with its rate limit taken (429). Called in
    the event loop: on one machine the token's `last_used_at` write (once a minute) never waits
    for the state's write lock (`Services.nonblocking`; skipped when it is taken)."""
    with services.nonblocking() if services.nonblocking is not None else nullcontext():
        account = services.accounts.authenticate(request.headers.get("authorization"))
    request.state.account = account
    decision = services.ratelimits.check(account.username, _kind(request))  # RateLimited: 429
    request.state.ratelimit_headers = headers_for(decision)
    return account


async def current_account(request: Request, services: ServicesDep) -> Account:
    """In the event loop: two reads by key and the rate bucket's write (its own SQLite file,
    written without syncs, on one machine; behind Lambda a function serves one request at a time)."""
    return authenticate(request, services)


async def optional_account(request: Request, services: ServicesDep) -> Account | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    return authenticate(request, services)


AccountDep = Annotated[Account, Depends(current_account)]
OptionalAccountDep = Annotated[Account | None, Depends(optional_account)]


def base_url(request: Request) -> str:
    configured = request.app.state.services.settings.public_url
    if configured:
        return configured
    return str(request.base_url).rstrip("/")


async def _base_url(request: Request) -> str:
    return base_url(request)


BaseUrlDep = Annotated[str, Depends(_base_url)]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object: 415 for another content type, 413 when too big, 400 when malformed
    or not strict JSON (the one parser every JSON body goes through)."""
    limit = request.app.state.services.settings.max_body_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise HTTPProblem(413, f"The request body is larger than {limit} bytes.")
    raw = await request.body()
    if len(raw) > limit:
        raise HTTPProblem(413, f"The request body is larger than {limit} bytes.")
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise HTTPProblem(415, "Send the request body as JSON with `Content-Type: application/json`.")
    value = parse_json(raw, "The request body")
    if not isinstance(value, dict):
        raise HTTPProblem(400, "The request body must be a JSON object.")
    return value


def parse_json(raw: bytes | str, what: str) -> Any:
    """Strict JSON (no NaN/Infinity, no lone surrogates, bounded nesting) or a 400 naming `what`."""
    try:
        return strictjson.loads(raw)
    except strictjson.StrictJSONError as exc:
        raise HTTPProblem(400, f"{what} is not valid JSON: {exc}.") from None


JsonBody = Annotated[dict[str, Any], Depends(json_body)]


def offset_cursor(cursor: str | None) -> int:
    """The offset in a list's `cursor` (lists paged by position): up to 9 ASCII digits, else 400."""
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 9):
        raise HTTPProblem(400, "The cursor is not valid; use the `next` URL of a previous page.")
    return int(cursor)


def page_url(base: str, path: str, cursor: str | None, **params: str | None) -> str | None:
    """An absolute page URL (JS paginate feeds `next` back verbatim, so it must be absolute)."""
    if not cursor:
        return None
    from urllib.parse import urlencode

    query = {k: v for k, v in params.items() if v is not None}
    query["cursor"] = cursor
    return f"{base}{path}?{urlencode(query)}"


class ApiRoute(APIRoute):
    """The routes of the API and the web UI (`route_class` of every router): they return plain
    dicts or Responses, so no response model is inferred from a return annotation. FastAPI would
    build a pydantic TypeAdapter of `dict[str, Any]` for each such route at import (about 3 % of
    the API function's cold start: 40 routes) and pass every response through it for nothing."""

    def __init__(self, path: str, endpoint: Any, *, response_model: Any = Default(None), **kwargs: Any) -> None:
        if isinstance(response_model, DefaultPlaceholder):
            response_model = None
        super().__init__(path, endpoint, response_model=response_model, **kwargs)
