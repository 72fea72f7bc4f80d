"""Models and versions, including the source-version upload the CLI uses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cogplane.domain import strictjson
from cogplane.domain.entities import Account, Model
from cogplane.domain.errors import Unprocessable
from cogplane.services.presenters import model_json, version_json
from cogplane.wiring import Services
from functions.api.deps import (
    AccountDep,
    ApiRoute,
    BaseUrlDep,
    JsonBody,
    ServicesDep,
    json_body,
    offset_cursor,
    page_url,
    parse_json,
)
from functions.api.errors import HTTPProblem

router = APIRouter(prefix="/v1", tags=["models"], route_class=ApiRoute)

MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # a source bundle (weights belong in packages or images)


def present_example(services: Services, prediction_id: str | None, base: str) -> dict[str, Any] | None:
    """An example prediction as JSON (examples are public by design), or None if it is gone."""
    if not prediction_id:
        return None
    prediction = services.state.get_prediction(prediction_id)
    if prediction is None:
        return None
    from functions.api.routers.predictions import present

    return present(services, prediction, base)


def present_model(services: Services, model: Model, base: str) -> dict[str, Any]:
    latest = None
    if model.latest_version_id:
        latest = services.state.get_version(model.owner, model.name, model.latest_version_id)
    # default_example is a prediction object or null (never a bare id)
    return model_json(model, base, latest, present_example(services, model.default_example_id, base))


@router.get("/models")
def list_models(
    services: ServicesDep,
    account: AccountDep,
    base: BaseUrlDep,
    sort_by: str = "latest_version_created_at",
    sort_direction: str = "desc",
    cursor: str | None = None,
) -> dict[str, Any]:
    """Public models, newest version first by default."""
    page = services.catalog.list_models(
        sort_by=sort_by, sort_direction=sort_direction, cursor=cursor, limit=services.settings.page_size
    )
    return {
        "previous": None,
        "next": page_url(base, "/v1/models", page.next_cursor, sort_by=sort_by, sort_direction=sort_direction),
        "results": [present_model(services, m, base) for m in page.items],
    }


async def search_models(
    request: Request, services: ServicesDep, account: AccountDep, base: BaseUrlDep
) -> dict[str, Any]:
    """`QUERY /v1/models` with the search text as the body (raw, or JSON-quoted as JS sends it)."""
    raw = (await request.body()).decode("utf-8", errors="replace").strip()
    if raw.startswith('"'):
        try:
            decoded = strictjson.loads(raw)
            raw = decoded if isinstance(decoded, str) else raw
        except ValueError:
            pass
    models = services.catalog.search_models(raw)
    return {"previous": None, "next": None, "results": [present_model(services, m, base) for m in models]}


router.add_api_route("/models", search_models, methods=["QUERY"])


@router.post("/models", status_code=201)
def create_model(services: ServicesDep, account: AccountDep, base: BaseUrlDep, body: JsonBody) -> JSONResponse:
    """Create a model in your account."""
    model = services.catalog.create_model(account, body)
    return JSONResponse(present_model(services, model, base), status_code=201)


@router.get("/models/{owner}/{name}")
def get_model(owner: str, name: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep) -> dict[str, Any]:
    """Get a model (private models only for their owner)."""
    return present_model(services, services.catalog.get_model(account, owner, name), base)


@router.patch("/models/{owner}/{name}")
def update_model(
    owner: str, name: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep, body: JsonBody
) -> dict[str, Any]:
    """Change a model's description, links or visibility."""
    return present_model(services, services.catalog.update_model(account, owner, name, body), base)


@router.delete("/models/{owner}/{name}", status_code=204)
def delete_model(owner: str, name: str, services: ServicesDep, account: AccountDep) -> Response:
    """Delete your model; only models without versions can be deleted."""
    services.catalog.delete_model(account, owner, name)
    return Response(status_code=204)


@router.get("/models/{owner}/{name}/examples")
def list_examples(
    owner: str, name: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep, cursor: str | None = None
) -> dict[str, Any]:
    """The model's example predictions (its default example first) that still exist."""
    model = services.catalog.get_model(account, owner, name)
    ids = list(dict.fromkeys([i for i in [model.default_example_id, *model.example_ids] if i]))
    examples = [e for e in (present_example(services, i, base) for i in ids) if e is not None]
    size = services.settings.page_size
    start = offset_cursor(cursor)
    more = start + size < len(examples)
    return {
        "previous": None,
        "next": page_url(base, f"/v1/models/{owner}/{name}/examples", str(start + size) if more else None),
        "results": examples[start : start + size],
    }


@router.get("/models/{owner}/{name}/versions")
def list_versions(
    owner: str, name: str, services: ServicesDep, account: AccountDep, base: BaseUrlDep, cursor: str | None = None
) -> dict[str, Any]:
    """The model's versions, newest first."""
    page = services.catalog.list_versions(account, owner, name, cursor=cursor, limit=services.settings.page_size)
    return {
        "previous": None,
        "next": page_url(base, f"/v1/models/{owner}/{name}/versions", page.next_cursor),
        "results": [version_json(v) for v in page.items],
    }


@router.get("/models/{owner}/{name}/versions/{version_id}")
def get_version(owner: str, name: str, version_id: str, services: ServicesDep, account: AccountDep) -> dict[str, Any]:
    """One version with its OpenAPI schema, and (an extension) its `build`: the status and log of
    its environment build (cogplane.builds)."""
    from cogplane import builds

    version = services.catalog.get_version(account, owner, name, version_id)
    return {**version_json(version), "build": builds.read(services.blobs, version)}


@router.delete("/models/{owner}/{name}/versions/{version_id}", status_code=202)
def delete_version(owner: str, name: str, version_id: str, services: ServicesDep, account: AccountDep) -> Response:
    """Delete one of your versions (202, as Replicate answers)."""
    services.catalog.delete_version(account, owner, name, version_id)
    return Response(status_code=202)


@router.post("/models/{owner}/{name}/versions", status_code=201)
async def push_version(
    owner: str, name: str, request: Request, services: ServicesDep, account: AccountDep
) -> JSONResponse:
    """Upload a source version (multipart: `bundle` tar.gz, `schema` and `config` JSON, `cog_version`).

    The version id is the sha256 of the bundle: pushing the same content again answers 200 with
    the existing version."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        return await _push_image_version(owner, name, request, services, account)
    if not content_type.startswith("multipart/form-data"):
        raise HTTPProblem(
            415,
            "Upload a version as multipart/form-data (bundle, schema, config), or "
            "register an image as JSON (image, openapi_schema, cog_version).",
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BUNDLE_BYTES:
        raise HTTPProblem(413, f"The bundle is larger than {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB.")
    form = await request.form(max_part_size=MAX_BUNDLE_BYTES)
    upload = form.get("bundle")
    if upload is None or isinstance(upload, str):
        raise Unprocessable("The `bundle` file part is required.", field="bundle")
    bundle = await upload.read()

    def _json(field: str) -> dict[str, Any]:
        value = form.get(field)
        if value is None:
            raise Unprocessable(f"The `{field}` part is required.", field=field)
        parsed = parse_json(value if isinstance(value, str) else value.file.read(), f"`{field}`")
        if not isinstance(parsed, dict):
            raise Unprocessable(f"`{field}` must be a JSON object.", field=field)
        return parsed

    schema, config = _json("schema"), _json("config")
    cog_version = form.get("cog_version")
    return await _push_version(services, account, owner, name, bundle, schema, config, cog_version)


async def _push_version(
    services: Services,
    account: Account,
    owner: str,
    name: str,
    bundle: bytes,
    schema: dict[str, Any],
    config: dict[str, Any],
    cog_version: object,
) -> JSONResponse:
    """Push a source version whose bundle came in the request."""
    from fastapi.concurrency import run_in_threadpool

    version, created = await run_in_threadpool(
        services.catalog.push_version,
        account,
        owner,
        name,
        bundle=bundle,
        schema=schema,
        config=config,
        cog_version=cog_version if isinstance(cog_version, str) else "0.23.1",
    )
    return JSONResponse(version_json(version), status_code=201 if created else 200)


async def _push_uploaded_bundle(
    owner: str, name: str, body: dict[str, Any], services: ServicesDep, account: AccountDep
) -> JSONResponse:
    """A source version whose bundle went straight to the store (`POST /v1/uploads`, purpose
    `bundle`): JSON `{"upload": id, "schema": {...}, "config": {...}, "cog_version": "..."}`."""
    from functions.api.routers.uploads import adopt_upload, take_upload

    schema, config, cog_version = body.get("schema"), body.get("config"), body.get("cog_version")
    if not isinstance(schema, dict):
        raise Unprocessable("`schema` must be a JSON object.", field="schema")
    if not isinstance(config, dict):
        raise Unprocessable("`config` must be a JSON object.", field="config")
    upload_id = body.get("upload")
    key, limit = await take_upload(services, account, upload_id, "bundle")
    version, created = await adopt_upload(
        services,
        upload_id,
        key,
        lambda: services.catalog.push_uploaded_version(
            account,
            owner,
            name,
            upload_key=key,
            max_bytes=limit,
            schema=schema,
            config=config,
            cog_version=cog_version if isinstance(cog_version, str) else "0.23.1",
        ),
    )
    return JSONResponse(version_json(version), status_code=201 if created else 200)


async def _push_image_version(
    owner: str, name: str, request: Request, services: ServicesDep, account: AccountDep
) -> JSONResponse:
    """Register an image version: `{"image": "REGISTRY/REPO@sha256:<id>", "openapi_schema": {...},
    "cog_version": "...", "config": {...}}` (`cogplane push --image` reads the schema and the
    config from the image's labels; the runner takes the image's `concurrency.max` from `config`).
    The version id is the digest's hex: registering the same image again answers 200."""
    body = await json_body(request)
    if "upload" in body:
        return await _push_uploaded_bundle(owner, name, body, services, account)
    schema = body.get("openapi_schema")
    if not isinstance(schema, dict):
        raise Unprocessable("`openapi_schema` is required (a JSON object).", field="openapi_schema")
    cog_version = body.get("cog_version")
    config = body.get("config")
    if config is not None and not isinstance(config, dict):
        raise Unprocessable("`config` (the image's run.cog.config label) must be a JSON object.", field="config")
    from fastapi.concurrency import run_in_threadpool

    version, created = await run_in_threadpool(
        services.catalog.push_image_version,
        account,
        owner,
        name,
        image=body.get("image"),
        schema=schema,
        cog_version=cog_version if isinstance(cog_version, str) else None,
        config=config,
    )
    return JSONResponse(version_json(version), status_code=201 if created else 200)
