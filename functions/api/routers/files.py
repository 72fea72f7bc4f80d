"""The files API (multipart uploads, used as model inputs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.datastructures import UploadFile

from cogplane.domain.errors import Unprocessable
from cogplane.services.files import PayloadTooLarge, file_json
from functions.api.deps import AccountDep, ApiRoute, BaseUrlDep, ServicesDep, page_url, parse_json
from functions.api.errors import HTTPProblem

router = APIRouter(prefix="/v1", tags=["files"], route_class=ApiRoute)


@router.post("/files", status_code=201)
async def create_file(request: Request, services: ServicesDep, account: AccountDep, base: BaseUrlDep) -> JSONResponse:
    """Upload a file (multipart part `content`; optional `filename`, `type`, `metadata`), or make
    one from an upload sent straight to the store (JSON `{"upload": id, "filename", "type",
    "metadata"}`, see `POST /v1/uploads`: deployed, the only way past ~4 MB)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return await _create_from_upload(request, services, account, base)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPProblem(415, "Upload files as multipart/form-data with the file in a part named `content`.")
    limit = services.settings.max_file_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + 64 * 1024:
        raise PayloadTooLarge.over("file", limit)
    form = await request.form(max_part_size=limit + 1)
    content = form.get("content")
    if not isinstance(content, UploadFile):
        raise Unprocessable("The file must be sent in a multipart part named `content`.", field="content")
    data = await content.read()
    metadata: Any = None
    raw_meta = form.get("metadata")
    if raw_meta is not None:
        # Python sends a form field holding JSON; JS sends a file part named `metadata` (blob).
        raw = await raw_meta.read() if isinstance(raw_meta, UploadFile) else raw_meta
        metadata = parse_json(raw, "`metadata`") if raw.strip() else None
    filename = form.get("filename")
    content_type = form.get("type")
    record = await run_in_threadpool(
        services.files.create,
        account,
        data,
        filename=filename if isinstance(filename, str) and filename else content.filename,
        content_type=content_type if isinstance(content_type, str) and content_type else content.content_type,
        metadata=metadata,
    )
    return JSONResponse(file_json(record, base), status_code=201)


async def _create_from_upload(request: Request, services: ServicesDep, account: AccountDep, base: str) -> JSONResponse:
    from functions.api.deps import json_body
    from functions.api.routers.uploads import adopt_upload, take_upload

    body = await json_body(request)
    if "upload" not in body:
        raise HTTPProblem(
            415,
            "Upload files as multipart/form-data with the file in a part named `content`, or as JSON "
            'naming an upload: {"upload": id} (see POST /v1/uploads).',
        )
    filename, content_type = body.get("filename"), body.get("type")
    if filename is not None and not isinstance(filename, str):
        raise Unprocessable("`filename` must be a string.", field="filename")
    if content_type is not None and not isinstance(content_type, str):
        raise Unprocessable("`type` must be a MIME type such as image/png.", field="type")
    upload_id = body.get("upload")
    key, _ = await take_upload(services, account, upload_id, "file")
    record = await adopt_upload(
        services,
        upload_id,
        key,
        lambda: services.files.create_from_upload(
            account, key, filename=filename, content_type=content_type, metadata=body.get("metadata")
        ),
    )
    return JSONResponse(file_json(record, base), status_code=201)


@router.get("/files")
def list_files(
    services: ServicesDep, account: AccountDep, base: BaseUrlDep, cursor: str | None = None
) -> dict[str, Any]:
    """Your files, newest first."""
    page = services.files.list(account, cursor=cursor, limit=services.settings.page_size)
    return {
        "previous": None,
        "next": page_url(base, "/v1/files", page.next_cursor),
        "results": [file_json(f, base) for f in page.items],
    }


@router.get("/files/{file_id}")
def get_file(file_id: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep) -> dict[str, Any]:
    """One of your files."""
    return file_json(services.files.get(account, file_id), base)


@router.get("/files/{file_id}/download")
def download_file(file_id: str, services: ServicesDep, account: AccountDep) -> RedirectResponse:
    """Redirects to a signed, expiring URL of the file's bytes."""
    record = services.files.get(account, file_id)
    return RedirectResponse(
        services.blobs.signed_url(record.blob_key, expires_in=3600, filename=record.name), status_code=307
    )


@router.delete("/files/{file_id}", status_code=204)
def delete_file(file_id: str, services: ServicesDep, account: AccountDep) -> Response:
    """Delete one of your files (then it is 404)."""
    services.files.delete(account, file_id)
    return Response(status_code=204)
