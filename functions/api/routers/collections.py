"""Collections defined by the install (cogplane/services/collections.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from cogplane.services.collections import CollectionService
from functions.api.deps import AccountDep, ApiRoute, BaseUrlDep, ServicesDep, offset_cursor, page_url
from functions.api.routers.models import present_model

if TYPE_CHECKING:
    from cogplane.wiring import Services

router = APIRouter(prefix="/v1", tags=["collections"], route_class=ApiRoute)


def _service(services: Services) -> CollectionService:
    return services.collections


@router.get("/collections")
def list_collections(
    services: ServicesDep, account: AccountDep, base: BaseUrlDep, cursor: str | None = None
) -> dict[str, Any]:
    """The install's collections (a page; `cursor` is the offset of the next one)."""
    every = _service(services).list_collections()
    size = services.settings.page_size
    start = offset_cursor(cursor)
    chunk = every[start : start + size]
    more = start + size < len(every)
    return {
        "previous": None,
        "next": page_url(base, "/v1/collections", str(start + size) if more else None),
        "results": [{"name": c.name, "slug": c.slug, "description": c.description} for c in chunk],
    }


@router.get("/collections/{slug}")
def get_collection(slug: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep) -> dict[str, Any]:
    """A collection with its models."""
    svc = _service(services)
    collection = svc.get(slug)
    return {
        "name": collection.name,
        "slug": collection.slug,
        "description": collection.description,
        "full_description": collection.full_description,
        "models": [present_model(services, m, base) for m in svc.models(collection)],
    }
