"""Use cases of the web UI: explore and collections, sharing, deleting, examples, the dashboard.

Everything here goes through the existing ports (no new StateStore methods): a prediction is
shared with a conditional `update_prediction`, deleted with `delete_prediction` plus its blobs
(`predictions/{blob_dir}/`), and a model's examples are the `example_ids` list on the model record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cogplane.domain import transitions
from cogplane.domain.entities import Account, Model, Page, Prediction, Version
from cogplane.domain.errors import Conflict, Forbidden, NotFound, Unprocessable
from cogplane.domain.status import TERMINAL, Status
from cogplane.ports import BlobStore, StateStore
from cogplane.schema import file_input_names, is_file_output, is_iterator_output
from cogplane.services.presenters import blob_prefix

if TYPE_CHECKING:
    from cogplane.services.catalog import CatalogService
    from cogplane.services.predictions import PredictionService

MAX_EXAMPLES = 12


@dataclass(frozen=True)
class Collection:
    slug: str
    title: str
    description: str


# Besides the install's collections (cogplane/services/collections.py), explore offers these,
# derived from each model's latest schema: they need no curation and group what a model takes and gives.
KINDS = (
    Collection("takes-files", "Works on your files", "Models that take an image, audio or other file."),
    Collection("makes-files", "Makes files", "Models whose output is an image, a sound or another file."),
    Collection("text", "Text in, text out", "Models that read text and write text or numbers."),
    Collection("streaming", "Streams its output", "Models that produce their output piece by piece."),
)


def collections_of(version: Version | None) -> set[str]:
    if version is None:
        return set()
    schema = version.openapi_schema or {}
    found = set()
    takes_files = bool(file_input_names(schema))
    if takes_files:
        found.add("takes-files")
    makes_files = is_file_output(schema)
    if makes_files:
        found.add("makes-files")
    if not takes_files and not makes_files:
        found.add("text")
    if is_iterator_output(schema):
        found.add("streaming")
    return found


@dataclass
class ExploreEntry:
    model: Model
    version: Version | None
    collections: set[str]


class WebService:
    def __init__(
        self, state: StateStore, blobs: BlobStore, predictions: PredictionService, catalog: CatalogService
    ) -> None:
        self.state = state
        self.blobs = blobs
        self.predictions = predictions
        self.catalog = catalog

    # --- explore ------------------------------------------------------------------------
    def collections(self) -> list[Collection]:
        """The install's collections, then the schema-derived kinds."""
        try:
            from cogplane.services.collections import CollectionService
        except ImportError:  # pragma: no cover - an install without collections
            return list(KINDS)
        installed = [
            Collection(c.slug, c.name, c.description) for c in CollectionService(self.state).list_collections()
        ]
        return installed + [k for k in KINDS if k.slug not in {c.slug for c in installed}]

    def explore(self, query: str = "", collection: str | None = None) -> tuple[list[ExploreEntry], bool]:
        """Public models with a version and at least one example (the search rule), matching the
        query and collection. If no public model has an example yet, every public model with a
        version is shown instead (second value True), so a first-time user sees something."""
        models = self.catalog.search_models(query or "", limit=200)
        members = self._installed_members(collection) if collection else None
        if members is not None:
            models = [m for m in models if m.full_name in members]
            collection = None
        entries = []
        for model in models:
            if not model.latest_version_id:
                continue
            version = self.state.get_version(model.owner, model.name, model.latest_version_id)
            if version is None:
                continue
            entries.append(ExploreEntry(model, version, collections_of(version)))
        if collection:
            entries = [e for e in entries if collection in e.collections]
        with_examples = [e for e in entries if e.model.example_ids or e.model.default_example_id]
        if with_examples:
            return with_examples, False
        return entries, bool(entries)

    def _installed_members(self, slug: str) -> set[str] | None:
        try:
            from cogplane.services.collections import CollectionService
        except ImportError:  # pragma: no cover
            return None
        svc = CollectionService(self.state)
        if slug not in {c.slug for c in svc.list_collections()}:
            return None
        return {m.full_name for m in svc.models(svc.get(slug))}

    # --- predictions --------------------------------------------------------------------
    def dashboard(self, viewer: Account, *, cursor: str | None, limit: int = 20) -> Page[Prediction]:
        return self.state.list_predictions(viewer.username, cursor=cursor, limit=limit)

    def _update(self, prediction: Prediction, changes: dict[str, Any]) -> Prediction:
        """A change to any prediction, finished ones included (conditional on the status read)."""
        for _ in range(5):
            try:
                return transitions.amend(changes, status=prediction.status).apply(self.state, prediction.id)
            except Conflict:
                fresh = self.state.get_prediction(prediction.id)
                if fresh is None:
                    raise NotFound("The requested resource could not be found.") from None
                prediction = fresh
        raise Conflict("The prediction kept changing; try again.")

    def share(self, viewer: Account, prediction_id: str, shared: bool = True) -> Prediction:
        prediction = self.predictions.get_own(viewer, prediction_id)
        if prediction.shared == shared:
            return prediction
        return self._update(prediction, {"shared": shared})

    def delete(self, viewer: Account, prediction_id: str) -> None:
        """Remove the prediction, its output files and its place among its model's examples.
        A running prediction is canceled first so that its runner stops."""
        prediction = self.predictions.get_own(viewer, prediction_id)
        if prediction.status not in TERMINAL:
            self.predictions.cancel(viewer, prediction_id)
        owner, _, name = prediction.model.partition("/")
        model = self.state.get_model(owner, name)
        if model is not None and (prediction_id in model.example_ids or model.default_example_id == prediction_id):
            self._set_examples(model, [i for i in model.example_ids if i != prediction_id])
        self.blobs.delete_prefix(blob_prefix(prediction))
        self.state.delete_prediction(prediction_id)

    # --- examples -----------------------------------------------------------------------
    def _set_examples(self, model: Model, ids: list[str]) -> Model:
        default = model.default_example_id if model.default_example_id in ids else (ids[0] if ids else None)
        model = model.replace(example_ids=ids, default_example_id=default)
        self.state.update_model(model)
        return model

    def add_example(self, viewer: Account, prediction_id: str) -> Model:
        """Owners show one of their own successful web predictions on their model's page (which
        shares it: examples are public)."""
        prediction = self.predictions.get_own(viewer, prediction_id)
        owner, _, name = prediction.model.partition("/")
        model = self.state.get_model(owner, name)
        if model is None:
            raise NotFound(f"Model {prediction.model} not found.")
        if model.owner != viewer.username:
            raise Forbidden("Only the model's owner can add examples to it.")
        if prediction.status != Status.SUCCEEDED:
            raise Unprocessable("Only a prediction that succeeded can be an example.")
        if prediction.remove_at is not None or prediction.data_removed:
            raise Unprocessable(
                "Only predictions made on the web can be examples: API predictions lose their data after an hour."
            )
        if prediction_id in model.example_ids:
            return model
        self.share(viewer, prediction_id, True)
        ids = [prediction_id, *model.example_ids][:MAX_EXAMPLES]
        return self._set_examples(model, ids)

    def remove_example(self, viewer: Account, prediction_id: str) -> Model:
        prediction = self.predictions.get_own(viewer, prediction_id)
        owner, _, name = prediction.model.partition("/")
        model = self.state.get_model(owner, name)
        if model is None or model.owner != viewer.username:
            raise Forbidden("Only the model's owner can change its examples.")
        return self._set_examples(model, [i for i in model.example_ids if i != prediction_id])

    def examples(self, model: Model) -> list[Prediction]:
        ids = list(model.example_ids)
        if model.default_example_id and model.default_example_id not in ids:
            ids.append(model.default_example_id)
        found = []
        for prediction_id in ids[:MAX_EXAMPLES]:
            prediction = self.state.get_prediction(prediction_id)
            if prediction is not None and prediction.status == Status.SUCCEEDED and not prediction.data_removed:
                found.append(prediction)
        return found
