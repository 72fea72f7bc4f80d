"""The safety check of image outputs: an internal prediction of the platform's own Cog model
(cogplane/safety-checker), run by the runners like any other, before an output is recorded.

A model's `safety_checker` setting (off | web | all) decides which predictions are checked (see
PredictionService.create). The runner calls `check` with a finished prediction's output before it
records the terminal state, so no client (API, web, webhook, stream) ever sees an unchecked image:
each image output is scored; a flagged one is replaced by the black image of the same size and file
type that the checker made, copied next to the prediction's other outputs.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cogplane.domain.errors import DomainError
from cogplane.domain.status import Status
from cogplane.services.presenters import BLOB_PREFIX, blob_ref

if TYPE_CHECKING:
    from cogplane.ports import BlobStore, StateStore
    from cogplane.services.files import FileService
    from cogplane.services.predictions import PredictionService

CHECKER_OWNER = "cogplane"
CHECKER_NAME = "safety-checker"
CHECKER = f"{CHECKER_OWNER}/{CHECKER_NAME}"


class SafetyCheckError(Exception):
    """The check could not run: the prediction fails rather than show unchecked images."""


@dataclass
class SafetyResult:
    output: Any
    flagged: list[int] = field(default_factory=list)  # indices into the output (a single file: 0)
    logs: str = ""
    seconds: float = 0.0


def image_outputs(output: Any, blobs: BlobStore) -> list[tuple[int, str, str]]:
    """(index, blob key, content type) of each image file of an output: a file, or a list of
    values (top level) some of which are files."""
    values = output if isinstance(output, list) else [output]
    found = []
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value.startswith(BLOB_PREFIX):
            continue
        key = value[len(BLOB_PREFIX) :]
        info = blobs.head(key)
        ctype = (info.content_type if info else None) or mimetypes.guess_type(key)[0] or ""
        if not ctype.startswith("image/"):
            ctype = mimetypes.guess_type(key)[0] or ctype
        if ctype.startswith("image/"):
            found.append((index, key, ctype))
    return found


def _folder_of(key: str, prediction_id: str) -> str:
    """The prediction's blob folder an output lives in (`predictions/<random>/`): replacements go
    next to the original, so they are removed with it and their URLs name no prediction id."""
    parts = key.split("/")
    if len(parts) > 2 and parts[0] == "predictions" and parts[1]:
        return f"predictions/{parts[1]}/"
    return f"predictions/{prediction_id}/"


def data_uri_bytes(value: str) -> bytes | None:
    """The content of a base64 `data:` URI (how cog returns files inside an object output)."""
    head, sep, payload = value.partition(",")
    if not value.startswith("data:") or not sep or not head.endswith(";base64"):
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


class SafetyService:
    def __init__(
        self,
        state: StateStore,
        blobs: BlobStore,
        files: FileService,
        predictions: PredictionService,
        *,
        base_url: str,
        threshold: float = 0.5,
        timeout_seconds: float = 900.0,
    ) -> None:
        self.state = state
        self.blobs = blobs
        self.files = files
        self.predictions = predictions
        self.base_url = (base_url or "http://cogplane.internal").rstrip("/")
        self.threshold = threshold
        self.timeout_seconds = timeout_seconds

    def check(self, prediction_id: str, output: Any) -> SafetyResult:
        """Check the image outputs of prediction `prediction_id`; raises SafetyCheckError."""
        images = image_outputs(output, self.blobs)
        if not images:
            return SafetyResult(output=output, logs="Safety checker: no image outputs to check.\n")
        started = time.monotonic()
        account = self.state.get_account(CHECKER_OWNER)
        model = self.state.get_model(CHECKER_OWNER, CHECKER_NAME)
        version = None
        if model is not None and model.latest_version_id:
            version = self.state.get_version(CHECKER_OWNER, CHECKER_NAME, model.latest_version_id)
        if account is None or model is None or version is None:
            raise SafetyCheckError(f"the safety checker model {CHECKER} is not installed")
        uploads = []
        try:
            for _, key, ctype in images:
                name = key.rsplit("/", 1)[-1]
                uploads.append(self.files.create(account, self.blobs.get(key), filename=name, content_type=ctype))
            body = {
                "input": {"images": [f"{self.base_url}/v1/files/{u.id}" for u in uploads], "threshold": self.threshold}
            }
            try:
                run = self.predictions.create(account, model, version, body, source="api")
            except DomainError as exc:
                raise SafetyCheckError(f"the safety checker refused the images: {exc.detail}") from exc
            run = self.predictions.wait(run.id, self.timeout_seconds)
            if run.status != Status.SUCCEEDED.value:
                self.predictions.cancel(account, run.id)
                reason = run.error or f"it ended {run.status}"
                raise SafetyCheckError(f"the safety checker's prediction {run.id} did not succeed: {reason}")
            result = run.output or {}
            scores = list(result.get("nsfw") or [])
            flagged_images = [int(i) for i in result.get("flagged") or []]
            replacements = list(result.get("replacements") or [])
            if len(scores) != len(images) or len(replacements) != len(flagged_images):
                raise SafetyCheckError(f"the safety checker answered {result!r} for {len(images)} images")
        finally:
            for upload in uploads:
                try:
                    self.files.delete(account, upload.id)
                except Exception:  # noqa: BLE001, S110 - the files' own expiry removes what is left
                    pass
        values = list(output) if isinstance(output, list) else [output]
        lines, flagged = [], []
        for image_index, replacement in zip(flagged_images, replacements, strict=True):
            index, key, ctype = images[image_index]
            new_key = f"{_folder_of(key, prediction_id)}safety/{index}/{key.rsplit('/', 1)[-1]}"
            self.blobs.put(new_key, self._file_bytes(replacement, index), content_type=ctype)
            values[index] = blob_ref(new_key)
            flagged.append(index)
            lines.append(
                f"Safety checker: output {index} ({key.rsplit('/', 1)[-1]}) was flagged (score "
                f"{scores[image_index]:.2f}) and replaced by a black image of the same size.\n"
            )
        seconds = round(time.monotonic() - started, 4)
        lines.append(
            f"Safety checker: checked {len(images)} image(s) in {seconds:.2f} s; {len(flagged) or 'none'} replaced.\n"
        )
        checked = values if isinstance(output, list) else values[0]
        return SafetyResult(output=checked, flagged=sorted(flagged), logs="".join(lines), seconds=seconds)

    def _file_bytes(self, value: Any, index: int) -> bytes:
        """A file of the checker's output: a blob reference, or a data: URI (cog's form for files
        inside an object output; a black image compresses to a few hundred bytes)."""
        if isinstance(value, str) and value.startswith(BLOB_PREFIX):
            return self.blobs.get(value[len(BLOB_PREFIX) :])
        data = data_uri_bytes(value) if isinstance(value, str) else None
        if data is None:
            raise SafetyCheckError(f"the safety checker returned no replacement for output {index}")
        return data
