"""The JSON shapes clients see (docs/replicate-api.md §1-2). The API and the webhook sender both use
these, so a webhook body is exactly what GET returns at that moment."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cogplane.cogconfig import environment_names
from cogplane.domain.entities import Deployment, Model, Prediction, Version
from cogplane.schema import is_file_output, is_iterator_output

if TYPE_CHECKING:
    from cogplane.wiring import Services

Signer = Callable[[str], str]  # a blob key -> a fresh signed URL

BLOB_PREFIX = "cogplane-blob:"  # how stored outputs refer to files in the blob store


def blob_prefix(p: Prediction) -> str:
    """Where a prediction's input and output blobs live (deleted together at data removal)."""
    return f"predictions/{p.blob_dir or p.id}/"


def blob_ref(key: str) -> str:
    return BLOB_PREFIX + key


def resolve_blob_refs(value: Any, sign: Signer) -> Any:
    """Replace stored blob references with fresh signed URLs, recursively."""
    if isinstance(value, str):
        return sign(value[len(BLOB_PREFIX) :]) if value.startswith(BLOB_PREFIX) else value
    if isinstance(value, list):
        return [resolve_blob_refs(v, sign) for v in value]
    if isinstance(value, dict):
        return {k: resolve_blob_refs(v, sign) for k, v in value.items()}
    return value


def blob_keys(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value[len(BLOB_PREFIX) :]] if value.startswith(BLOB_PREFIX) else []
    if isinstance(value, list):
        return [k for v in value for k in blob_keys(v)]
    if isinstance(value, dict):
        return [k for v in value.values() for k in blob_keys(v)]
    return []


def prediction_json(
    p: Prediction,
    base_url: str,
    sign: Signer | None = None,
    *,
    has_stream: bool = False,
    file_stream: bool = False,
    stream_base_url: str = "",
    stream_token: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """`file_stream`: the model outputs files, so the stream URL lives under /v1/files/ (JS makes
    FileOutput objects from a stream's output events only there). `stream_base_url`: where stream
    links point (COGPLANE_STREAM_URL; the deployed stack's streaming function); empty: `base_url`.
    `stream_token(prediction_id)`: the stream URL's own token (cogplane.sealing.StreamTokens); the
    prediction id is never in a stream URL, and without a token there is no stream URL."""
    training = p.kind == "training"
    noun, page = ("trainings", "t") if training else ("predictions", "p")
    urls = {
        "get": f"{base_url}/v1/{noun}/{p.id}",
        "cancel": f"{base_url}/v1/{noun}/{p.id}/cancel",
        "web": f"{base_url}/{page}/{p.id}",
    }
    if (has_stream or p.stream) and stream_token is not None and not training:
        stream_base = stream_base_url.rstrip("/") or base_url
        token = stream_token(p.id)
        urls["stream"] = (
            f"{stream_base}/v1/files/streams/{token}" if file_stream else f"{stream_base}/v1/streams/{token}"
        )
    output = p.output
    if sign is not None and output is not None:
        output = resolve_blob_refs(output, sign)
    body: dict[str, Any] = {
        "id": p.id,
        "model": p.model,
        "version": p.version,
        "input": p.input if p.input is not None else {},
        "logs": p.logs if p.logs is not None else "",
        "output": output,
        "data_removed": p.data_removed,
        "error": p.error if p.error is None or isinstance(p.error, str) else str(p.error),
        "status": p.status,
        "source": p.source,
        "created_at": p.created_at,
        "started_at": p.started_at,
        "completed_at": p.completed_at,
        "urls": urls,
        "metrics": p.metrics or {},
    }
    if p.safety is not None:  # extension: the platform's safety check of image outputs
        body["safety"] = {"checked": bool(p.safety.get("checked")), "flagged": list(p.safety.get("flagged") or [])}
    if training:  # Replicate's Training object: a prediction's fields plus `destination`
        body["destination"] = p.destination
    if p.deadline:
        body["deadline"] = p.deadline
    if p.deployment:
        body["deployment"] = p.deployment
    if p.webhook:
        body["webhook"] = p.webhook
        if p.webhook_events_filter is not None:
            body["webhook_events_filter"] = p.webhook_events_filter
    return body


def version_json(v: Version) -> dict[str, Any]:
    return {
        "id": v.id,
        "created_at": v.created_at,
        "cog_version": v.cog_version or "0.23.1",
        "openapi_schema": v.openapi_schema or {},
        # extension: the names (never the values) cog.yaml `environment:` sets in the model's process
        "environment": environment_names(v.config),
    }


def model_json(
    m: Model, base_url: str, latest: Version | None = None, default_example: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "url": f"{base_url}/{m.owner}/{m.name}",
        "owner": m.owner,
        "name": m.name,
        "description": m.description,
        "visibility": m.visibility,
        "github_url": m.github_url,
        "paper_url": m.paper_url,
        "license_url": m.license_url,
        "cover_image_url": m.cover_image_url,
        "run_count": m.run_count,
        "default_example": default_example,
        "latest_version": version_json(latest) if latest else None,
        "created_at": m.created_at,
        "is_official": False,
        "hardware": m.hardware,
        "safety_checker": m.safety_checker,  # extension: off | web | all
    }


def deployment_json(d: Deployment, created_by: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": d.owner,
        "name": d.name,
        "current_release": {
            "number": d.release_number,
            "model": d.model,
            "version": d.version,
            "created_at": d.release_created_at,
            "created_by": created_by,
            "configuration": {
                "hardware": d.hardware,
                "min_instances": d.min_instances,
                "max_instances": d.max_instances,
                "timeout": d.timeout,
            },
        },
    }


_OUTPUT_KINDS_MAX = 4096


def output_kind(services: Services, model: str, version_id: str, version: Version | None = None) -> tuple[bool, bool]:
    """(iterator output, file output) of a model version. Versions never change, so this is
    read once per process (kept with the services), not on every poll of every prediction."""
    cache: dict[tuple[str, str], tuple[bool, bool]] = services.output_kinds
    key = (model, version_id)
    kind = cache.get(key)
    if kind is None:
        if version is None:
            owner, _, name = model.partition("/")
            version = services.state.get_version(owner, name, version_id)
        if version is None:
            return False, False  # unknown (or deleted): not cached, it may appear
        schema = version.openapi_schema or {}
        kind = (is_iterator_output(schema), is_file_output(schema))
        if len(cache) >= _OUTPUT_KINDS_MAX:
            cache.clear()
        cache[key] = kind
    return kind


def present_prediction(services: Services, p: Prediction, base: str, version: Version | None = None) -> dict[str, Any]:
    """What GET /v1/predictions/{id} returns — also every webhook's body, so they cannot differ:
    fresh signed output URLs, and `urls.stream` for iterator models (under /v1/files/ when the
    model outputs files, which is how the JS client knows to make FileOutputs)."""
    settings = services.settings

    def sign(key: str) -> str:
        return services.blobs.signed_url(key, expires_in=settings.output_url_ttl_seconds)

    iterator, files = output_kind(services, p.model, p.version, version)
    return prediction_json(
        p,
        base,
        sign,
        has_stream=iterator,
        file_stream=files,
        stream_base_url=settings.stream_url,
        stream_token=lambda prediction_id: services.stream_tokens().token(prediction_id),
    )
