"""Trainings: create from a version's training interface, get, list, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cogplane.services.presenters import present_prediction
from functions.api.deps import AccountDep, ApiRoute, BaseUrlDep, JsonBody, ServicesDep, page_url

router = APIRouter(prefix="/v1", tags=["trainings"], route_class=ApiRoute)


@router.post("/models/{owner}/{name}/versions/{version_id}/trainings", status_code=201)
async def create_training(
    owner: str, name: str, version_id: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep, body: JsonBody
) -> JSONResponse:
    """Train a version (`destination`: an existing model of yours that gets the trained version)."""
    training = await run_in_threadpool(services.trainings.create, account, owner, name, version_id, body)
    out = present_prediction(services, training, base)
    return JSONResponse(out, status_code=201, headers={"Location": out["urls"]["get"]})


@router.get("/trainings")
def list_trainings(
    services: ServicesDep, account: AccountDep, base: BaseUrlDep, cursor: str | None = None
) -> dict[str, Any]:
    """Your trainings, newest first, 100 per page."""
    page = services.trainings.list(account, cursor=cursor, limit=services.settings.page_size)
    return {
        "previous": None,
        "next": page_url(base, "/v1/trainings", page.next_cursor),
        "results": [present_prediction(services, t, base) for t in page.items],
    }


@router.get("/trainings/{training_id}")
def get_training(training_id: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep) -> dict[str, Any]:
    """Get a training (only its creator can)."""
    return present_prediction(services, services.trainings.get(account, training_id), base)


@router.post("/trainings/{training_id}/cancel")
def cancel_training(training_id: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep) -> dict[str, Any]:
    """Cancel a training; a finished one is returned unchanged."""
    return present_prediction(services, services.trainings.cancel(account, training_id), base)
