"""Models and versions: create, read with visibility rules, push source versions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cogplane import cogconfig
from cogplane.domain import strictjson
from cogplane.domain.entities import Account, Model, Page, Version
from cogplane.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unprocessable
from cogplane.domain.ids import is_version_id, new_prediction_id, version_id_for
from cogplane.ports import BlobStore, Clock, StateStore
from cogplane.services.accounts import AccountService
from cogplane.services.files import copy_and_digest

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MODEL_FIELDS = ("description", "github_url", "paper_url", "license_url", "cover_image_url")
PATCH_FIELDS = ("description", "readme", "github_url", "paper_url", "weights_url", "license_url")
SAFETY_CHECKER = ("off", "web", "all")  # which predictions of a model get the image safety check
IMAGE_PINNED = re.compile(r"^[a-z0-9][a-z0-9.:_/-]{0,250}@sha256:[0-9a-f]{64}$")
VERSION_NOT_FOUND = "The specified version does not exist (or perhaps you don't have permission to use it?)"


def check_schema(schema: Any, field: str) -> None:
    """A pushed OpenAPI schema has the shape the platform reads (components.schemas.Input with
    object properties, and Output) and is strict JSON; else 422/400 before anything is stored."""
    components = schema.get("components") if isinstance(schema, dict) else None
    schemas = components.get("schemas") if isinstance(components, dict) else None
    if (
        not isinstance(schemas, dict)
        or not isinstance(schemas.get("Input"), dict)
        or not isinstance(schemas.get("Output"), dict)
    ):
        raise Unprocessable("The schema must have components.schemas.Input and Output (objects).", field=field)
    properties = schemas["Input"].get("properties", {})
    required = schemas["Input"].get("required", [])
    if (
        not isinstance(properties, dict)
        or not all(isinstance(p, dict) for p in properties.values())
        or not isinstance(required, list)
        or not all(isinstance(r, str) for r in required)
    ):
        raise Unprocessable(
            "components.schemas.Input must have `properties` (an object of objects) and `required` (a list of names).",
            field=field,
        )
    if not strictjson.is_strict(schema):
        raise InvalidRequest(
            "The schema must be strict JSON: finite numbers, valid Unicode, nested at most "
            f"{strictjson.MAX_DEPTH} deep.",
            field=field,
        )


UPLOADED_BUNDLES = "bundles/uploaded/"  # pushed through POST /v1/uploads: kept where they were hashed


def bundle_key(version_id: str) -> str:
    return f"bundles/{version_id}.tar.gz"


class CatalogService:
    def __init__(
        self,
        state: StateStore,
        blobs: BlobStore,
        clock: Clock,
        hardware: dict[str, str],
        access: AccountService | None = None,
        *,
        missing_packages: Callable[[list[str]], list[str]] = cogconfig.missing_on_host,
        packages_where: tuple[str, str] = cogconfig.HOST,
        image_prefixes: list[str] | None = None,
    ) -> None:
        self.image_prefixes = list(image_prefixes or [])  # empty: image versions from any registry
        self.state = state
        self.blobs = blobs
        self.clock = clock
        self.hardware = hardware
        self.access = access or AccountService(state, clock)
        # which `build.system_packages` the runners' machines lack: the host's dpkg locally, the
        # runner image's fixed set when deployed (cogplane.cogconfig)
        self.missing_packages = missing_packages
        self.packages_where = packages_where

    # --- models -------------------------------------------------------------------------
    def create_model(self, viewer: Account, body: dict[str, Any]) -> Model:
        owner, name = body.get("owner"), body.get("name")
        if not isinstance(owner, str) or not owner:
            raise Unprocessable("`owner` is required.", field="owner")
        if not isinstance(name, str) or not MODEL_NAME.match(name):
            raise Unprocessable(
                "`name` is required: lowercase letters, digits, '.', '-' and '_', starting with a letter or digit.",
                field="name",
            )
        if not self.access.can_act_for(viewer, owner):
            raise Forbidden(
                f"You can only create models in your own account ({viewer.username}) or an organization you belong to."
            )
        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise Unprocessable("`visibility` must be `public` or `private`.", field="visibility")
        hardware = body.get("hardware", "cpu")
        if hardware not in self.hardware:
            raise Unprocessable(
                f"Unknown hardware {hardware!r}; this install offers: {', '.join(self.hardware)}.",
                field="hardware",
            )
        extra: dict[str, Any] = {}  # the optional string fields of Model, checked here
        for key in MODEL_FIELDS:
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                raise Unprocessable(f"`{key}` must be a string.", field=key)
            extra[key] = value
        model = Model(
            owner=owner, name=name, visibility=visibility, hardware=hardware, created_at=self.clock.now(), **extra
        )
        self.state.create_model(model)
        return model

    def get_model(self, viewer: Account | None, owner: str, name: str) -> Model:
        """A private model is visible only to its owner (and, for an org, its members); others
        get 404, as if it did not exist."""
        model = self.state.get_model(owner, name)
        if model is None or (model.visibility != "public" and not self.access.can_act_for(viewer, owner)):
            raise NotFound(f"Model {owner}/{name} not found.")
        return model

    def update_model(self, viewer: Account, owner: str, name: str, body: dict[str, Any]) -> Model:
        model = self.get_model(viewer, owner, name)
        if not self.access.can_act_for(viewer, owner):
            raise Forbidden("Only the owner can change a model.")
        changes = {}
        for key, value in body.items():
            if key not in PATCH_FIELDS and key not in ("visibility", "safety_checker"):
                raise Unprocessable(f"`{key}` cannot be changed.", field=key)
            if key == "visibility" and value not in ("public", "private"):
                raise Unprocessable("`visibility` must be `public` or `private`.", field=key)
            if key == "safety_checker" and value not in SAFETY_CHECKER:
                raise Unprocessable("`safety_checker` must be `off`, `web` or `all`.", field=key)
            if value is not None and not isinstance(value, str):
                raise Unprocessable(f"`{key}` must be a string.", field=key)
            changes[key] = value
        model = model.replace(**changes)
        self.state.update_model(model)
        return model

    def delete_model(self, viewer: Account, owner: str, name: str) -> None:
        model = self.get_model(viewer, owner, name)
        if not self.access.can_act_for(viewer, owner):
            raise Forbidden("Only the owner can delete a model.")
        if self.state.list_versions(owner, name, limit=1).items:
            raise Conflict("Delete every version of the model first; only models without versions can go.")
        self.state.delete_model(model.owner, model.name)

    def list_models(self, *, sort_by: str, sort_direction: str, cursor: str | None, limit: int) -> Page[Model]:
        if sort_by not in ("model_created_at", "latest_version_created_at"):
            raise InvalidRequest("`sort_by` must be `model_created_at` or `latest_version_created_at`.")
        if sort_direction not in ("asc", "desc"):
            raise InvalidRequest("`sort_direction` must be `asc` or `desc`.")
        return self.state.list_models(sort_by=sort_by, descending=sort_direction == "desc", cursor=cursor, limit=limit)

    def search_models(self, query: str, *, limit: int = 100) -> list[Model]:
        """Public models whose name, owner or description contain every word of the query.

        Reads at most a bounded number of public models (newest versions first)."""
        words = [w for w in query.lower().split() if w]
        found: list[Model] = []
        cursor = None
        for _ in range(10):  # bounded: at most 10 pages of public models are searched
            page = self.state.list_models(cursor=cursor, limit=100)
            for model in page.items:
                text = f"{model.owner}/{model.name} {model.description or ''}".lower()
                if all(w in text for w in words):
                    found.append(model)
            cursor = page.next_cursor
            if not cursor or len(found) >= limit:
                break
        return found[:limit]

    # --- versions -----------------------------------------------------------------------
    def push_version(
        self,
        viewer: Account,
        owner: str,
        name: str,
        *,
        bundle: bytes,
        schema: dict[str, Any],
        config: dict[str, Any],
        cog_version: str,
    ) -> tuple[Version, bool]:
        """Store a source bundle as a version (id = sha256 of the bundle: same content, same id).

        Everything is checked before the first write; the bundle is written before the record that
        names it, and removed again (if this push wrote it) when the record cannot be stored."""
        model = self._check_push(viewer, owner, name, schema, config)
        if not bundle:
            raise Unprocessable("The bundle is empty.", field="bundle")
        version_id = version_id_for(bundle)
        key = bundle_key(version_id)
        wrote_bundle = self.blobs.head(key) is None
        if wrote_bundle:
            self.blobs.put(key, bundle, content_type="application/gzip")
        version = self._version(owner, name, version_id, key, len(bundle), schema, config, cog_version)
        return self._store_pushed(model, version, written=key if wrote_bundle else None)

    def push_uploaded_version(
        self,
        viewer: Account,
        owner: str,
        name: str,
        *,
        upload_key: str,
        max_bytes: int,
        schema: dict[str, Any],
        config: dict[str, Any],
        cog_version: str,
    ) -> tuple[Version, bool]:
        """`push_version` of a bundle its owner sent straight to the store (`POST /v1/uploads`, up
        to 512 MiB), never held in this process (deployed, a Lambda function with 1 GiB): the store
        copies the upload to a key only the platform writes, and that copy is what is hashed and
        kept (the uploader may send again to its URL at any moment, and bundles are shared by
        content). NotFound if the upload has no bytes."""
        model = self._check_push(viewer, owner, name, schema, config)
        staged = f"{UPLOADED_BUNDLES}{new_prediction_id()}.tar.gz"
        digest = copy_and_digest(
            self.blobs, upload_key, staged, max_bytes=max_bytes, what="bundle", content_type="application/gzip"
        )
        if not digest.size:
            self.blobs.delete(staged)
            raise Unprocessable("The bundle is empty.", field="bundle")
        key = bundle_key(digest.sha256)
        if self.blobs.head(key) is not None:  # the same bytes were pushed before: keep one copy
            self.blobs.delete(staged)
        else:
            key = staged  # the version's bundle stays where it was hashed (`Version.bundle_key`)
        version = self._version(owner, name, digest.sha256, key, digest.size, schema, config, cog_version)
        return self._store_pushed(model, version, written=staged if key == staged else None)

    def _check_push(
        self, viewer: Account, owner: str, name: str, schema: dict[str, Any], config: dict[str, Any]
    ) -> Model:
        """Everything a push checks before its first write."""
        model = self.get_model(viewer, owner, name)
        if not self.access.can_act_for(viewer, owner):
            raise NotFound(f"Model {owner}/{name} not found.")
        check_schema(schema, "schema")
        if isinstance(config, dict) and not strictjson.is_strict(config):
            raise InvalidRequest("`config` must be strict JSON.", field="config")
        if not isinstance(config, dict):
            raise Unprocessable("`config` must be the cog.yaml as a JSON object.", field="config")
        try:  # what cog's CLI would refuse at build time, and system packages the runners lack
            cogconfig.check_config(config, missing_packages=self.missing_packages, where=self.packages_where)
        except cogconfig.ConfigError as exc:
            raise Unprocessable(str(exc), title="Invalid cog.yaml", field="config") from exc
        return model

    def _version(
        self,
        owner: str,
        name: str,
        version_id: str,
        key: str,
        size: int,
        schema: dict[str, Any],
        config: dict[str, Any],
        cog_version: str,
    ) -> Version:
        return Version(
            id=version_id,
            owner=owner,
            name=name,
            created_at=self.clock.now(),
            openapi_schema=schema,
            cog_version=cog_version or "0.23.1",
            kind="source",
            bundle_key=key,
            config=config,
            size=size,
        )

    def _store_pushed(self, model: Model, version: Version, *, written: str | None) -> tuple[Version, bool]:
        """Record a pushed version whose bundle is stored; `written`, the bundle this push wrote, is
        removed again if the record cannot be stored, or if the version was there already (it
        keeps its own bundle)."""
        try:
            stored, created = self._store_version(model, version)
        except BaseException:
            if written:
                self.blobs.delete(written)
            raise
        if written and not created and stored.bundle_key != written:
            self.blobs.delete(written)
        return stored, created

    def _store_version(self, model: Model, version: Version) -> tuple[Version, bool]:
        """Record a version and make it the model's latest; a new record is removed again if the
        model cannot be updated (a version that is stored but not listed as latest is half a push)."""
        stored, created = self.state.put_version(version)
        if created:
            try:
                self.state.update_model(
                    model.replace(latest_version_id=stored.id, latest_version_created_at=stored.created_at)
                )
            except BaseException:
                self.state.delete_version(version.owner, version.name, version.id)
                raise
        return stored, created

    def push_image_version(
        self,
        viewer: Account,
        owner: str,
        name: str,
        *,
        image: str | None,  # from the request body: checked here
        schema: dict[str, Any],
        cog_version: str | None,
        config: dict[str, Any] | None = None,
    ) -> tuple[Version, bool]:
        """Register an image built by `cog build` (`IMAGE@sha256:<id>`, pinned by its manifest
        digest; the CLI read the schema from its `run.cog.openapi_schema` label). Id = the hex."""
        model = self.get_model(viewer, owner, name)
        if not self.access.can_act_for(viewer, owner):
            raise NotFound(f"Model {owner}/{name} not found.")
        if not isinstance(image, str) or not IMAGE_PINNED.match(image):
            raise Unprocessable("`image` must be pinned by digest: REGISTRY/REPOSITORY@sha256:<64 hex>.", field="image")
        if self.image_prefixes and not image.startswith(tuple(self.image_prefixes)):
            raise Unprocessable(
                f"`image` must be in this install's image repositories ({', '.join(self.image_prefixes)}...): "
                "runners pull only from there. Push the image there first (cogplane push --image).",
                field="image",
            )
        check_schema(schema, "openapi_schema")
        if cog_version is not None and (not isinstance(cog_version, str) or len(cog_version) > 64):
            raise Unprocessable("`cog_version` must be a version string.", field="cog_version")
        if config is not None and (not isinstance(config, dict) or not strictjson.is_strict(config)):
            raise InvalidRequest("`config` must be a strict JSON object.", field="config")
        try:  # the runner sends up to concurrency.max predictions at once to the image's cog
            cogconfig.config_concurrency(config)
        except cogconfig.ConfigError as exc:
            raise Unprocessable(str(exc), title="Invalid cog.yaml", field="config") from exc
        version_id = image.rsplit("@sha256:", 1)[1]
        version = Version(
            id=version_id,
            owner=owner,
            name=name,
            created_at=self.clock.now(),
            openapi_schema=schema,
            cog_version=cog_version or "0.23.1",
            kind="image",
            image=image,
            config=config or {},
        )
        return self._store_version(model, version)

    def get_version(self, viewer: Account | None, owner: str, name: str, version_id: str) -> Version:
        self.get_model(viewer, owner, name)
        version = self.state.get_version(owner, name, version_id)
        if version is None:
            raise NotFound(f"Version {version_id} of {owner}/{name} not found.")
        return version

    def list_versions(
        self, viewer: Account | None, owner: str, name: str, *, cursor: str | None, limit: int
    ) -> Page[Version]:
        self.get_model(viewer, owner, name)
        return self.state.list_versions(owner, name, cursor=cursor, limit=limit)

    def delete_version(self, viewer: Account, owner: str, name: str, version_id: str) -> None:
        model = self.get_model(viewer, owner, name)
        if not self.access.can_act_for(viewer, owner):
            raise Forbidden("Only the owner can delete a version.")
        version = self.state.get_version(owner, name, version_id)
        self.state.delete_version(owner, name, version_id)
        if version is not None and version.weights_key:  # a trained version's weights go with it
            self.blobs.delete(version.weights_key)
        if model.latest_version_id == version_id:
            newest = self.state.list_versions(owner, name, limit=1).items
            model = model.replace(
                latest_version_id=newest[0].id if newest else None,
                latest_version_created_at=newest[0].created_at if newest else None,
            )
            self.state.update_model(model)

    def latest_version(self, viewer: Account | None, owner: str, name: str) -> tuple[Model, Version]:
        model = self.get_model(viewer, owner, name)
        if not model.latest_version_id:
            raise Unprocessable(
                f"Model {owner}/{name} has no versions yet; push one first.", title="Model has no versions"
            )
        version = self.state.get_version(owner, name, model.latest_version_id)
        if version is None:
            raise Unprocessable(f"Model {owner}/{name} has no versions yet; push one first.")
        return model, version

    def resolve_version(self, viewer: Account, ref: Any) -> tuple[Model, Version]:
        """`version` on POST /predictions: a bare 64-hex id, `owner/name:id`, or `owner/name`."""
        invalid = Unprocessable(VERSION_NOT_FOUND, title="Invalid version or not permitted", field="version")
        if not isinstance(ref, str) or not ref:
            raise Unprocessable("`version` is required.", title="Invalid version or not permitted", field="version")
        if ":" in ref or "/" in ref:
            model_ref, _, version_id = ref.partition(":")
            owner, _, name = model_ref.partition("/")
            try:
                if not version_id:
                    return self.latest_version(viewer, owner, name)
                model = self.get_model(viewer, owner, name)
            except NotFound as exc:
                raise invalid from exc
            version = self.state.get_version(owner, name, version_id)
            if version is None:
                raise invalid
            return model, version
        if not is_version_id(ref):
            raise invalid
        for version in self.state.find_versions(ref):
            owning = self.state.get_model(version.owner, version.name)
            if owning and (owning.visibility == "public" or self.access.can_act_for(viewer, owning.owner)):
                return owning, version
        raise invalid
