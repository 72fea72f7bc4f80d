"""Uploads straight to the blob store (`POST /v1/uploads`): the API hands out where to send the
bytes (deployed: an S3 presigned POST; `make up`: a signed PUT of its own), so a file (100 MiB)
or a source bundle (512 MiB) never passes API Gateway's 10 MB or Lambda's 6 MB limit. The upload's
id is then given to `POST /v1/files` or `POST /v1/models/{owner}/{name}/versions` (JSON
`{"upload": id, ...}`), which take the bytes and delete the upload."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cogplane.domain.entities import Account
from cogplane.domain.errors import NotFound, Unprocessable
from cogplane.domain.ids import new_prediction_id
from cogplane.domain.timefmt import add_seconds
from cogplane.resources import UPLOADS_PREFIX
from cogplane.services.files import PayloadTooLarge
from cogplane.wiring import Services
from functions.api.deps import AccountDep, ApiRoute, ServicesDep, json_body
from functions.api.routers.models import MAX_BUNDLE_BYTES

router = APIRouter(prefix="/v1", tags=["uploads"], route_class=ApiRoute)

UPLOAD_TTL_SECONDS = 3600
_ID = re.compile(r"^[a-z0-9]{10,40}$")
T = TypeVar("T")


def limit_for(services: Services, purpose: str) -> int:
    return MAX_BUNDLE_BYTES if purpose == "bundle" else services.settings.max_file_bytes


def upload_key(owner: str, upload_id: str) -> str:
    return f"{UPLOADS_PREFIX}{owner}/{upload_id}"


@router.post("/uploads", status_code=201)
async def create_upload(request: Request, services: ServicesDep, account: AccountDep) -> JSONResponse:
    """Where to send a file's or bundle's bytes: `{"purpose": "file"|"bundle", "size": n}` ->
    `{"id", "upload": {"url", "method", "fields"}, "max_bytes", "expires_at"}` (max_bytes: `size`
    when given, else the limit). POST: a multipart
    form of `fields`, then the bytes in a part named `file`; PUT: the bytes as the body."""
    body = await json_body(request)
    purpose = body.get("purpose", "file")
    if purpose not in ("file", "bundle"):
        raise Unprocessable("`purpose` must be `file` or `bundle`.", field="purpose")
    limit = limit_for(services, purpose)
    size = body.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise Unprocessable("`size` must be a positive integer (bytes).", field="size")
    if size is not None and size > limit:
        raise PayloadTooLarge.over(purpose, limit)
    if size is not None:  # the target takes no more than declared (S3's policy; the local PUT's `max`)
        limit = size
    upload_id = new_prediction_id()
    target = services.blobs.upload_url(
        upload_key(account.username, upload_id), max_bytes=limit, expires_in=UPLOAD_TTL_SECONDS
    )
    return JSONResponse(
        {
            "id": upload_id,
            "purpose": purpose,
            "max_bytes": limit,
            "expires_at": add_seconds(services.clock.now(), UPLOAD_TTL_SECONDS),
            "upload": target,
        },
        status_code=201,
    )


async def take_upload(services: Services, account: Account, upload_id: Any, purpose: str) -> tuple[str, int]:
    """The store key of one of the caller's uploads, and the limit its bytes must keep to; 422 if
    it has none, 413 (and the upload deleted) if it is over the limit. The bytes are not read here:
    the service has the store copy and hash them."""
    if not isinstance(upload_id, str) or not _ID.match(upload_id):
        raise Unprocessable("`upload` must be the id `POST /v1/uploads` returned.", field="upload")
    key = upload_key(account.username, upload_id)
    info = await run_in_threadpool(services.blobs.head, key)
    if info is None:
        raise _no_bytes(upload_id)
    limit = limit_for(services, purpose)
    if info.size > limit:
        await run_in_threadpool(services.blobs.delete, key)
        raise PayloadTooLarge.over(purpose, limit)
    return key, limit


def _no_bytes(upload_id: str) -> Unprocessable:
    return Unprocessable(
        f"The upload {upload_id} has no bytes: send them to its URL first (uploads expire after an hour).",
        field="upload",
    )


async def adopt_upload(services: Services, upload_id: Any, key: str, make: Callable[[], T]) -> T:
    """Run `make` (a service call that copies the upload `key` into its own place), then delete
    the upload; 422 if its bytes went away meanwhile, and a 413 deletes it too."""
    try:
        made = await run_in_threadpool(make)
    except NotFound as exc:
        if await run_in_threadpool(services.blobs.head, key) is None:
            raise _no_bytes(str(upload_id)) from exc
        raise
    except PayloadTooLarge:
        await run_in_threadpool(services.blobs.delete, key)
        raise
    await run_in_threadpool(services.blobs.delete, key)
    return made
