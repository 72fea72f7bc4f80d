"""Deployments: create, list, get, update (new release), delete, and their predictions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cogplane.domain.entities import Deployment
from cogplane.services.presenters import deployment_json
from cogplane.wiring import Services
from functions.api.deps import AccountDep, ApiRoute, BaseUrlDep, JsonBody, ServicesDep, page_url
from functions.api.routers.predictions import Target, _create

router = APIRouter(prefix="/v1", tags=["deployments"], route_class=ApiRoute)


def present_deployment(services: Services, deployment: Deployment) -> dict[str, Any]:
    return deployment_json(deployment, services.deployments.creator(deployment))


@router.get("/deployments")
def list_deployments(
    services: ServicesDep, account: AccountDep, base: BaseUrlDep, cursor: str | None = None
) -> dict[str, Any]:
    """Your deployments by name, one page at a time (`next` is an absolute URL)."""
    page = services.deployments.list(account, cursor=cursor, limit=services.settings.page_size)
    creators: dict[str, dict[str, Any]] = {}
    results = []
    for d in page.items:
        if d.created_by not in creators:
            creators[d.created_by] = services.deployments.creator(d)
        results.append(deployment_json(d, creators[d.created_by]))
    return {
        "previous": None,
        "next": page_url(base, "/v1/deployments", page.next_cursor),
        "results": results,
    }


@router.post("/deployments", status_code=201)
def create_deployment(services: ServicesDep, account: AccountDep, body: JsonBody) -> JSONResponse:
    """Create a deployment in your account.

    Status 201: Replicate's OpenAPI 1.0.0-a1 says 200, but this creates a resource and the other
    create endpoints answer 201; both clients accept any 2xx (docs/replicate-api.md §1, our choice)."""
    deployment = services.deployments.create(account, body)
    return JSONResponse(present_deployment(services, deployment), status_code=201)


@router.get("/deployments/{owner}/{name}")
def get_deployment(owner: str, name: str, services: ServicesDep, account: AccountDep) -> dict[str, Any]:
    """Get one of your deployments (anyone else's is 404)."""
    return present_deployment(services, services.deployments.get(account, owner, name))


@router.patch("/deployments/{owner}/{name}")
def update_deployment(
    owner: str, name: str, services: ServicesDep, account: AccountDep, body: JsonBody
) -> dict[str, Any]:
    """Change any of version, hardware, min_instances, max_instances: a new release."""
    return present_deployment(services, services.deployments.update(account, owner, name, body))


@router.delete("/deployments/{owner}/{name}", status_code=204)
def delete_deployment(owner: str, name: str, services: ServicesDep, account: AccountDep) -> Response:
    """Delete one of your deployments; its queued and running predictions still finish."""
    services.deployments.delete(account, owner, name)
    return Response(status_code=204)


@router.post("/deployments/{owner}/{name}/predictions", status_code=201)
async def create_deployment_prediction(
    owner: str,
    name: str,
    request: Request,
    services: ServicesDep,
    account: AccountDep,
    base: BaseUrlDep,
    body: JsonBody,
) -> JSONResponse:
    """Run the deployment's current release; the prediction is served by the deployment's pool."""

    def target() -> Target:
        deployment, model, version, pool = services.deployments.target(account, owner, name)
        return Target(
            model,
            version,
            deployment=f"{deployment.owner}/{deployment.name}",
            pool=pool,
            timeout=deployment.timeout,
            hardware=deployment.hardware,
        )

    return await _create(request, services, account, base, target, body)
