"""Predictions: create (three routes), get, list, cancel."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cogplane.domain.entities import Account, Model, Prediction, Version
from cogplane.domain.errors import InvalidRequest
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import iso, parse
from cogplane.ports import WouldBlock
from cogplane.services.presenters import present_prediction
from cogplane.wiring import Services
from functions.api.deps import (
    AccountDep,
    ApiRoute,
    BaseUrlDep,
    ServicesDep,
    authenticate,
    base_url,
    json_body,
    page_url,
)

router = APIRouter(prefix="/v1", tags=["predictions"], route_class=ApiRoute)

# RFC 7240: `wait`, `wait=N` or `wait="N"`, optionally followed by `; parameters`
_WAIT = re.compile(r'^\s*wait(?:\s*=\s*(?:(\d+)|"(\d+)"))?\s*(?:;.*)?$', re.IGNORECASE)


def parse_prefer(header: str | None, cap: int) -> int | None:
    """Seconds to hold a create for `Prefer: wait[=N]`, or None for async."""
    if not header:
        return None
    for part in header.split(","):
        match = _WAIT.match(part)
        if match:
            digits = (match.group(1) or match.group(2) or "").lstrip("0")
            if match.group(1) is None and match.group(2) is None:
                seconds = 60
            else:  # int() refuses over 4300 digits: anything over 6 is past every cap anyway
                seconds = cap if len(digits) > 6 else int(digits or "0")
            return max(1, min(seconds, cap))
    return None


def prefer_header(request: Request) -> str:
    """Every `Prefer` header as one list (RFC 7240: several headers mean the same as one)."""
    return ", ".join(request.headers.getlist("prefer"))


# API Gateway ends every request at 29 s (504), counted from its arrival; the answer needs a margin.
GATEWAY_TIMEOUT_SECONDS = 29.0
GATEWAY_MARGIN_SECONDS = 4.0


def gateway_time_left(scope: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds a `Prefer: wait` may still hold this request behind API Gateway (None off Lambda).

    The gateway's clock started at `requestContext.requestTimeEpoch`, before a cold start or a
    slow create: the wait is what is left of its 29 s, less a margin, and never more than what is
    left of the function's own timeout.
    """
    event = scope.get("aws.event")
    if not isinstance(event, dict):
        return None
    now = time.time() if now is None else now
    left: list[float] = []
    epoch = (event.get("requestContext") or {}).get("requestTimeEpoch")
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        left.append(GATEWAY_TIMEOUT_SECONDS - GATEWAY_MARGIN_SECONDS - (now - epoch / 1000))
    context = scope.get("aws.context")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            left.append(float(remaining()) / 1000 - GATEWAY_MARGIN_SECONDS)
        except (TypeError, ValueError):
            pass
    return max(0.0, min(left)) if left else None


# replicate 1.0.7 reads a `Prefer: wait=N` answer with a read timeout of N + 0.5 s from sending the
# request: the hold ends that long after the request arrived, less what the answer needs to travel.
WAIT_REPLY_MARGIN_SECONDS = 0.25


def wait_time_left(scope: Mapping[str, Any], wait: float, arrived: float, now: float | None = None) -> float:
    """Seconds to hold a create for `Prefer: wait=N`: N counted from the request's arrival (the
    gateway's `requestTimeEpoch` behind Lambda, before a cold start; else when the route began),
    not from the end of the create, which can take seconds (a cold boot's RunTask), less a margin
    for the answer, and never past the gateway's own limit."""
    now = time.time() if now is None else now
    event = scope.get("aws.event")
    epoch = (event.get("requestContext") or {}).get("requestTimeEpoch") if isinstance(event, dict) else None
    if isinstance(epoch, int | float) and not isinstance(epoch, bool):
        arrived = min(arrived, epoch / 1000)
    held = wait - (now - arrived) - WAIT_REPLY_MARGIN_SECONDS
    gateway = gateway_time_left(scope, now)
    if gateway is not None:
        held = min(held, gateway)
    return max(0.0, held)


def present(services: Services, p: Prediction, base: str, version: Version | None = None) -> dict[str, Any]:
    return present_prediction(services, p, base, version)


@dataclass(frozen=True)
class Target:
    """What a create runs: the model and version, and for a deployment its name and settings."""

    model: Model
    version: Version
    deployment: str | None = None
    pool: str | None = None
    timeout: float | None = None
    hardware: str | None = None


async def _create(
    request: Request,
    services: Services,
    account: Account,
    base: str,
    target: Callable[[], Target],
    body: dict[str, Any],
) -> JSONResponse:
    """Resolve `target` and create, in one worker-thread hop (both read or write the store)."""
    arrived = time.time()
    prefer = prefer_header(request)
    wait = parse_prefer(prefer, services.settings.max_wait_seconds)

    def create() -> tuple[Version, Prediction]:
        what = target()
        made = services.predictions.create(
            account,
            what.model,
            what.version,
            body,
            cancel_after=request.headers.get("cancel-after"),
            deployment=what.deployment,
            pool=what.pool,
            timeout=what.timeout,
            hardware=what.hardware,
        )
        return what.version, made

    version, prediction = await _run_create(services, body, create)
    headers: dict[str, str] = {}
    if wait is not None:
        held = wait_time_left(request.scope, float(wait), arrived)
        if held > 0:
            prediction = await services.predictions.wait_async(
                prediction.id, held, unended=prediction.status not in TERMINAL
            )
        headers["Preference-Applied"] = f"wait={wait}" if prefer.strip() != "wait" else "wait"
        if prediction.status not in TERMINAL:
            # Both clients treat anything but `starting` as final: never show a running state here.
            prediction = prediction.replace(status=Status.STARTING, output=None)
    body_out = present(services, prediction, base, version)
    headers["Location"] = body_out["urls"]["get"]
    return JSONResponse(body_out, status_code=201, headers=headers)


# The event loop creates itself only what needs no network and little CPU: no webhook and no URL
# input (checking those resolves host names), and an input of at most this much (one per value,
# one per character of a string): validating a big one must not hold up every other request.
INLINE_INPUT_SIZE = 64 * 1024


def _small_and_local(value: Any, budget: list[int]) -> bool:
    budget[0] -= 1
    if isinstance(value, str):
        budget[0] -= len(value)
        return budget[0] >= 0 and not value.startswith(("http://", "https://", "data:"))
    if isinstance(value, dict):
        return all(_small_and_local(v, budget) for v in value.values())
    if isinstance(value, list):
        return all(_small_and_local(v, budget) for v in value)
    return budget[0] >= 0


def inline_create(body: dict[str, Any]) -> bool:
    """Whether a create of `body` may run in the event loop (see `_run_create`)."""
    if body.get("webhook") is not None or body.get("webhook_completed") is not None:
        return False
    return _small_and_local(body.get("input"), [INLINE_INPUT_SIZE])


async def _run_create(
    services: Services, body: dict[str, Any], create: Callable[[], tuple[Version, Prediction]]
) -> tuple[Version, Prediction]:
    """Run `create` in the event loop where the store's writes can refuse to wait
    (`Services.nonblocking`: the single machine's SQLite) and the body needs no network; in a
    worker thread otherwise, or when the write lock is taken (WouldBlock: nothing was written).
    The hop to a worker thread and back was about 0.3 ms of a warm prediction's path."""
    if services.nonblocking is not None and inline_create(body):
        try:
            with services.nonblocking():
                return create()
        except WouldBlock:
            pass
    return await run_in_threadpool(create)


def _caller(request: Request) -> tuple[Services, Account, str]:
    """The hot routes' dependencies in one call (the body, where there is one, after them, as
    FastAPI resolved it): services, account, base URL. FastAPI's solving of those dependencies
    was about a tenth of the API's own CPU per create."""
    services = request.app.state.services
    return services, authenticate(request, services), base_url(request)


@router.post("/predictions", status_code=201)
async def create_prediction(request: Request) -> JSONResponse:
    """Create a prediction for a version (`id`, `owner/name:id` or `owner/name`)."""
    services, account, base = _caller(request)
    body = await json_body(request)
    return await _create(
        request,
        services,
        account,
        base,
        lambda: Target(*services.catalog.resolve_version(account, body.get("version"))),
        body,
    )


@router.post("/models/{owner}/{name}/predictions", status_code=201)
async def create_model_prediction(owner: str, name: str, request: Request) -> JSONResponse:
    """Create a prediction with the model's latest version."""
    services, account, base = _caller(request)
    body = await json_body(request)
    return await _create(
        request, services, account, base, lambda: Target(*services.catalog.latest_version(account, owner, name)), body
    )


@router.get("/predictions/{prediction_id}")
async def get_prediction(prediction_id: str, request: Request) -> dict[str, Any]:
    """Get a prediction (only its creator can)."""
    # What clients poll: on one machine it is read in the event loop (a SQLite read by key never
    # waits), with no worker-thread hop; deployed (DynamoDB, over the network) in a worker thread.
    services, account, base = _caller(request)
    if services.nonblocking is not None:
        prediction = services.predictions.get(account, prediction_id)
    else:
        prediction = await run_in_threadpool(services.predictions.get, account, prediction_id)
    return present(services, prediction, base)


def _timestamp(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return iso(parse(value))
    except ValueError as exc:
        raise InvalidRequest(f"`{name}` must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z.") from exc


@router.get("/predictions")
def list_predictions(
    services: ServicesDep,
    account: AccountDep,
    base: BaseUrlDep,
    created_after: str | None = None,
    created_before: str | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Your predictions, newest first, 100 per page."""
    after, before = _timestamp(created_after, "created_after"), _timestamp(created_before, "created_before")
    page = services.predictions.list(
        account, created_after=after, created_before=before, cursor=cursor, limit=services.settings.page_size
    )
    results = [present(services, p, base) for p in page.items]
    return {
        "previous": None,
        "next": page_url(
            base, "/v1/predictions", page.next_cursor, created_after=created_after, created_before=created_before
        ),
        "results": results,
    }


@router.post("/predictions/{prediction_id}/cancel")
def cancel_prediction(
    prediction_id: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep
) -> dict[str, Any]:
    """Cancel a prediction; a finished one is returned unchanged."""
    return present(services, services.predictions.cancel(account, prediction_id), base)
