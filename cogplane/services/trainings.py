"""Trainings: runs of a version's `train` interface whose success makes a new version.

A training is a prediction record with `kind: training` (and a `destination`), so it shares the
prediction machinery: queue, runner, logs, cancel, timeout, webhooks, data removal. It runs on
its own pool (`t-{version}`), whose runner starts the cog server in train mode
(`--x-mode train`, `PUT /trainings/{id}`). On success the destination model gets a new version:
the base version's code and environment with the trained weights (cog's COG_WEIGHTS), the base
schema's prediction interface, and an id that is the sha256 of the base id and the weights digest.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from cogplane.domain import pools
from cogplane.domain.entities import Account, Page, Prediction, Version
from cogplane.domain.errors import NotFound, Unprocessable
from cogplane.domain.status import Status
from cogplane.ports import BlobStore, Clock, StateStore
from cogplane.schema import has_training, training_view, without_training
from cogplane.services.presenters import BLOB_PREFIX, blob_ref

if TYPE_CHECKING:
    from cogplane.services.catalog import CatalogService
    from cogplane.services.predictions import PredictionService

NO_TRAINING = "This version has no training interface (cog.yaml has no `train:` entry)."


def trained_version_id(base_version_id: str, weights_sha256: str) -> str:
    """Deterministic: the same weights trained from the same base are the same version."""
    return hashlib.sha256(f"{base_version_id}:{weights_sha256}".encode()).hexdigest()


def weights_key(owner: str, name: str, version_id: str, filename: str) -> str:
    """Outside `predictions/`: the one-hour data removal never touches a version's weights."""
    return f"weights/{owner}/{name}/{version_id}/{filename}"


class TrainingService:
    def __init__(
        self, state: StateStore, blobs: BlobStore, clock: Clock, catalog: CatalogService, predictions: PredictionService
    ) -> None:
        self.state = state
        self.blobs = blobs
        self.clock = clock
        self.catalog = catalog
        self.predictions = predictions

    # --- create -------------------------------------------------------------------------
    def create(
        self, viewer: Account, owner: str, name: str, version_id: str, body: dict[str, Any], *, source: str = "api"
    ) -> Prediction:
        """Validate the destination and the input (against TrainingInput), then queue it."""
        model = self.catalog.get_model(viewer, owner, name)
        version = self.catalog.get_version(viewer, owner, name, version_id)
        if not has_training(version.openapi_schema or {}):
            raise Unprocessable(NO_TRAINING, title="Version cannot be trained", field="version")
        if version.kind != "source":
            raise Unprocessable(
                "Only source versions (pushed with `cogplane push`) can be trained here.",
                title="Version cannot be trained",
                field="version",
            )
        destination = self._destination(viewer, body.get("destination"))
        trainable = version.replace(openapi_schema=training_view(version.openapi_schema))
        body = {k: v for k, v in body.items() if k != "stream"}  # trainings do not stream
        return self.predictions.create(
            viewer,
            model,
            trainable,
            body,
            source=source,
            pool=pools.for_training(version.id),
            kind="training",
            destination=destination,
        )

    def _destination(self, viewer: Account, value: Any) -> str:
        """An existing model the caller may push to (their own, or their org's). We answer 422
        naming the field (Replicate answers 404 here; a 422 says which part of the request is
        wrong, and clients raise on both)."""
        if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
            raise Unprocessable(
                "`destination` is required: an existing model of yours, as `owner/name`.",
                title="Invalid destination",
                field="destination",
            )
        owner, name = value.split("/")
        model = self.state.get_model(owner, name)
        may_push = self.catalog.access.can_act_for(viewer, owner)  # the owner, or a member of the org
        if model is None or (model.visibility != "public" and not may_push):
            raise Unprocessable(
                f"`destination`: model {value} does not exist; create it first.",
                title="Invalid destination",
                field="destination",
            )
        if not may_push:
            raise Unprocessable(
                f"`destination`: you cannot push to {value}; use a model of your own.",
                title="Invalid destination",
                field="destination",
            )
        return value

    # --- read ---------------------------------------------------------------------------
    def get(self, viewer: Account, training_id: str) -> Prediction:
        training = self.predictions.get_own(viewer, training_id)
        if training.kind != "training":
            raise NotFound("The requested resource could not be found.")
        return training

    def list(self, viewer: Account, *, cursor: str | None, limit: int) -> Page[Prediction]:
        return self.state.list_predictions(viewer.username, cursor=cursor, limit=limit, kind="training")

    def cancel(self, viewer: Account, training_id: str) -> Prediction:
        self.get(viewer, training_id)
        return self.predictions.cancel(viewer, training_id)

    # --- success: the trained version ---------------------------------------------------
    def complete(self, training: Prediction, changes: dict[str, Any]) -> dict[str, Any]:
        """Called by the runner with the terminal changes of a succeeded training (output as blob
        references): stores the weights for good, creates the destination's version and returns
        the changes to record — output `{"version": "owner/name:id", "weights": <blob>}` — or a
        failure with the reason."""
        try:
            version = self._make_version(training, changes.get("output"))
        except _TrainingFailed as exc:
            return {**changes, "status": Status.FAILED, "error": str(exc), "output": None}
        return {
            **changes,
            "output": {"version": f"{version.model}:{version.id}", "weights": blob_ref(version.weights_key or "")},
        }

    def _make_version(self, training: Prediction, output: Any) -> Version:
        found = _weights(output, self.blobs)
        if found is None:
            raise _TrainingFailed(
                "The training returned no weights file: train() must return a "
                "cog.Path, or an object with a `weights` Path."
            )
        data, filename, content_type = found
        base = next((v for v in self.state.find_versions(training.version) if v.model == training.model), None)
        if base is None:
            raise _TrainingFailed(f"The base version {training.model}:{training.version} no longer exists.")
        dest_owner, _, dest_name = (training.destination or "").partition("/")
        destination = self.state.get_model(dest_owner, dest_name)
        if destination is None:
            raise _TrainingFailed(f"The destination model {training.destination} no longer exists.")
        digest = hashlib.sha256(data).hexdigest()
        version_id = trained_version_id(base.id, digest)
        stored_key = weights_key(dest_owner, dest_name, version_id, filename)
        if self.blobs.head(stored_key) is None:
            self.blobs.put(stored_key, data, content_type=content_type)
        version = Version(
            id=version_id,
            owner=dest_owner,
            name=dest_name,
            created_at=self.clock.now(),
            openapi_schema=without_training(base.openapi_schema or {}),
            cog_version=base.cog_version,
            kind=base.kind,
            bundle_key=base.bundle_key,
            image=base.image,
            config=dict(base.config or {}),
            size=base.size,
            weights_key=stored_key,
            trained_from=f"{base.model}:{base.id}",
            training_id=training.id,
        )
        stored, created = self.state.put_version(version)
        if created:
            self.state.update_model(
                destination.replace(latest_version_id=stored.id, latest_version_created_at=stored.created_at)
            )
        return stored


class _TrainingFailed(Exception):
    pass


def _weights(output: Any, blobs: BlobStore) -> tuple[bytes, str, str | None] | None:
    """(bytes, file name, content type) of the weights a train() returned — a Path, or an
    object's `weights` Path — whether cog uploaded the file (a blob reference) or, as coglet
    does in train mode, inlined it as a data: URI."""
    if isinstance(output, dict):
        output = output.get("weights")
    if not isinstance(output, str):
        return None
    if output.startswith(BLOB_PREFIX):
        key = output[len(BLOB_PREFIX) :]
        info = blobs.head(key)
        return blobs.get(key), os.path.basename(key) or "weights", info.content_type if info else None
    if output.startswith("data:"):
        header, sep, payload = output[5:].partition(",")
        if not sep:
            return None
        content_type = header.split(";")[0] or None
        try:
            data = base64.b64decode(payload) if header.endswith(";base64") else unquote_to_bytes(payload)
        except ValueError:
            return None
        return data, "weights" + (mimetypes.guess_extension(content_type or "") or ""), content_type
    return None
