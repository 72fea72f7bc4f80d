"""Server-sent events for a prediction (docs/replicate-api.md §3 "Streaming").

`GET /v1/streams/{token}` (text models) and `GET /v1/files/streams/{token}` (models whose output
is files: JS 1.4.0 makes FileOutput objects only when the stream URL's path starts with
`/v1/files/`). Both are capability URLs: JS sends no Authorization header, Python sends its
bearer; the header is ignored either way. The token is the stream's own (cogplane.sealing
.StreamTokens): only the server can make or read it, it does not contain the prediction id in
any readable form, and it is shown only in `urls.stream` (to the creator and their webhook
receiver) for predictions that have a stream. A token works while its prediction runs and
STREAM_GRACE_SECONDS (60 s) after it ends; then 404. The prediction id alone opens nothing.

The stream polls the state store every 100 ms (the same store the runner writes) and sends:
`: hi` first; `output` (each newly appended item of an iterator output, or the final output of
other models), `logs` (only the new part), then `error` (`{"detail": ...}`) for failures and
`done` (`{}`, `{"reason": "canceled"}` or `{"reason": "error"}`). Every event has an `id:` line
(Python's decoder drops events before the first id); multi-line data is sent as several `data:`
lines. A prediction whose data was already removed gets `: 408` after 30 s and the stream ends,
as Replicate's does. A `: ping` comment every 15 s keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from cogplane.domain.entities import Prediction
from cogplane.domain.errors import NotFound
from cogplane.domain.status import TERMINAL, Status
from cogplane.domain.timefmt import seconds_between
from cogplane.logs import set_prediction
from cogplane.sealing import STREAM_GRACE_SECONDS
from cogplane.services.presenters import output_kind, resolve_blob_refs
from cogplane.wiring import Services
from functions.api.deps import ApiRoute, ServicesDep

router = APIRouter(prefix="/v1", tags=["streams"], route_class=ApiRoute)

POLL_SECONDS = 0.1
KEEPALIVE_SECONDS = 15.0
REMOVED_TIMEOUT_SECONDS = 30.0
_LINES = re.compile(r"\r\n|\r|\n")


def sse(event: str, data: str, event_id: str) -> str:
    """One event; every line of `data` becomes its own `data:` line (clients join them with \\n)."""
    lines = "".join(f"data: {line}\n" for line in _LINES.split(data))
    return f"event: {event}\nid: {event_id}\n{lines}\n"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


async def events(services: Services, prediction_id: str) -> AsyncIterator[str]:
    prediction = await run_in_threadpool(services.state.get_prediction, prediction_id)
    if prediction is None:
        return
    iterator, _ = await run_in_threadpool(output_kind, services, prediction.model, prediction.version)
    ttl = services.settings.output_url_ttl_seconds

    def sign(key: str) -> str:
        return services.blobs.signed_url(key, expires_in=ttl)

    stamp = int(time.time())
    seq = 0

    def next_id() -> str:
        nonlocal seq
        seq += 1
        return f"{stamp}:{seq - 1}"

    yield ": hi\n\n"
    if prediction.data_removed:
        await asyncio.sleep(REMOVED_TIMEOUT_SECONDS)
        yield ": 408: 408 Request Timeout\n\n"
        return
    log_offset = 0
    sent_items = 0
    quiet_since = time.monotonic()
    while True:
        status = prediction.status
        terminal = status in TERMINAL
        logs = prediction.logs or ""
        if len(logs) > log_offset:
            yield sse("logs", logs[log_offset:], next_id())
            log_offset = len(logs)
            quiet_since = time.monotonic()
        output = prediction.output
        if iterator and isinstance(output, list) and len(output) > sent_items:
            for item in output[sent_items:]:
                yield sse("output", _text(resolve_blob_refs(item, sign)), next_id())
            sent_items = len(output)
            quiet_since = time.monotonic()
        if terminal:
            if not iterator and status == Status.SUCCEEDED and output is not None:
                yield sse("output", _text(resolve_blob_refs(output, sign)), next_id())
            if status == Status.FAILED:
                yield sse("error", json.dumps({"detail": prediction.error or "The prediction failed."}), next_id())
                yield sse("done", json.dumps({"reason": "error"}), next_id())
            elif status in (Status.CANCELED, Status.ABORTED):
                yield sse("done", json.dumps({"reason": "canceled"}), next_id())
            else:
                yield sse("done", "{}", next_id())
            return
        if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            yield ": ping\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL_SECONDS)
        current = await run_in_threadpool(services.state.get_prediction, prediction_id)
        if current is None:  # deleted meanwhile
            yield sse("done", json.dumps({"reason": "error"}), next_id())
            return
        prediction = current


STREAM_NOT_FOUND = "The requested resource could not be found."
STREAM_ENDED = (
    f"This stream has ended: a stream URL works while its prediction runs and "
    f"{STREAM_GRACE_SECONDS} s after it ends. GET the prediction for its output."
)


def open_stream(services: Services, token: str) -> Prediction:
    """The prediction a stream URL's token names, if the stream may still be read (else NotFound)."""
    prediction_id = services.stream_tokens().prediction_id(token)
    prediction = services.state.get_prediction(prediction_id) if prediction_id else None
    if prediction is None:
        raise NotFound(STREAM_NOT_FOUND)
    iterator, _ = output_kind(services, prediction.model, prediction.version)
    if not (prediction.stream or iterator):  # it never had a stream URL
        raise NotFound(STREAM_NOT_FOUND)
    if (
        prediction.status in TERMINAL
        and prediction.completed_at
        and seconds_between(prediction.completed_at, services.clock.now()) > STREAM_GRACE_SECONDS
    ):
        raise NotFound(STREAM_ENDED)
    return prediction


async def _stream(services: Services, token: str) -> StreamingResponse:
    prediction = await run_in_threadpool(open_stream, services, token)
    set_prediction(prediction.id)  # this request's log lines name it from here on (cogplane.logs)
    return StreamingResponse(
        events(services, prediction.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/streams/{token}")
async def stream_prediction(token: str, services: ServicesDep) -> StreamingResponse:
    """Server-sent events of a prediction's output and logs (no auth needed: a capability URL)."""
    return await _stream(services, token)


@router.get("/files/streams/{token}")
async def stream_prediction_files(token: str, services: ServicesDep) -> StreamingResponse:
    """The same stream under /v1/files/ (JS turns its outputs into FileOutput objects)."""
    return await _stream(services, token)
