"""Small read endpoints: hardware, account, webhook signing secret, signed blob downloads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from cogplane.domain.errors import NotFound
from functions.api.deps import AccountDep, ApiRoute, ServicesDep
from functions.api.errors import HTTPProblem

router = APIRouter(prefix="/v1", tags=["misc"], route_class=ApiRoute)


@router.get("/hardware")
def list_hardware(services: ServicesDep, account: AccountDep) -> JSONResponse:
    """The hardware SKUs this install offers (a bare array, as Replicate returns)."""
    return JSONResponse([{"sku": sku, "name": name} for sku, name in services.hardware.items()])


@router.get("/account")
def get_account(account: AccountDep) -> dict[str, Any]:
    """The account the token belongs to."""
    return {
        "type": account.type,
        "username": account.username,
        "name": account.name or account.username,
        "github_url": account.github_url,
        "avatar_url": account.avatar_url,
    }


@router.get("/webhooks/default/secret")
def webhook_secret(account: AccountDep) -> dict[str, str]:
    """The `whsec_` key your webhooks are signed with."""
    return {"key": account.webhook_secret}


@router.head("/blobs/{key:path}")
def head_blob(key: str, request: Request, services: ServicesDep, expires: int = 0, signature: str = "") -> Response:
    """What a GET of the signed URL would answer, without the body."""
    return download_blob(key, request, services, expires, signature)


@router.get("/blobs/{key:path}")
def download_blob(key: str, request: Request, services: ServicesDep, expires: int = 0, signature: str = "") -> Response:
    """A signed, expiring download URL (no auth header needed; a bearer one is ignored): the local
    store's files, or deployed, S3 objects streamed by the stream function
    (cogplane.adapters.aws.signed). It works until `expires` by the platform's clock, then 404."""
    from cogplane.adapters.aws.signed import SignedUrlBlobStore
    from cogplane.adapters.local.disk import DiskBlobStore

    blobs = services.blobs  # the stores that sign their own URLs (a bare S3 store presigns them)
    if not isinstance(blobs, DiskBlobStore | SignedUrlBlobStore) or not signature:
        raise NotFound("This link is invalid or has expired.")
    if not blobs.verify(key, expires, signature):
        raise NotFound("This link is invalid or has expired.")
    if isinstance(blobs, SignedUrlBlobStore):
        from cogplane.adapters.aws.s3 import content_disposition

        if request.method == "HEAD":  # what a GET would send, without opening the object
            info = blobs.head(key)
            if info is None:
                raise NotFound("This file no longer exists.")
            return Response(
                media_type=info.content_type or "application/octet-stream",
                headers={
                    "content-length": str(info.size),
                    "content-disposition": content_disposition(key.rsplit("/", 1)[-1]),
                },
            )
        chunks, found = blobs.open(key)  # NotFound (404) if it is gone
        return StreamingResponse(
            chunks,
            media_type=found.content_type or "application/octet-stream",
            headers={
                "content-length": str(found.size),
                "content-disposition": content_disposition(key.rsplit("/", 1)[-1]),
            },
        )
    info = blobs.head(key)
    if info is None:
        raise NotFound("This file no longer exists.")
    return FileResponse(
        blobs.path_of(key),
        media_type=info.content_type or "application/octet-stream",
        filename=key.rsplit("/", 1)[-1],
    )


@router.put("/blobs/{key:path}", status_code=204)
async def upload_blob(
    key: str, request: Request, services: ServicesDep, expires: int = 0, max: int = 0, signature: str = ""
) -> Response:
    """The local store's signed upload URL (what `POST /v1/uploads` hands out on `make up`; an S3
    presigned POST when deployed): the body is the bytes, at most `max`."""
    from fastapi.concurrency import run_in_threadpool

    from cogplane.adapters.local.disk import DiskBlobStore
    from cogplane.services.files import PayloadTooLarge

    blobs = services.blobs
    if not isinstance(blobs, DiskBlobStore) or not signature or not blobs.verify_upload(key, expires, max, signature):
        raise NotFound("This link is invalid or has expired.")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > max:
            raise PayloadTooLarge(f"The upload is larger than its {max // (1024 * 1024)} MiB limit.")
    if not data:
        raise HTTPProblem(400, "The upload is empty.")
    await run_in_threadpool(blobs.put, key, bytes(data), content_type=request.headers.get("content-type"))
    return Response(status_code=204)
