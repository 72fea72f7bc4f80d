"""Deployments: a named, owned pointer to one model version with its own pool and scaling bounds.

A deployment's predictions go to the pool `d-{owner}.{name}.{version_id}`. The version is part
of the pool, so a release that changes the version sends new predictions to a new pool while the
old pool's runners finish their queued and in-flight work and then idle out: no prediction in
flight fails because of a release. Owners are usernames (no '.'), deployment names may contain
'.', version ids are hex: a pool name splits back at its first and last dot.
"""

from __future__ import annotations

from typing import Any

from cogplane.domain import pools
from cogplane.domain.entities import Account, Deployment, Model, Page, Version
from cogplane.domain.errors import Conflict, NotFound, Unprocessable
from cogplane.ports import Clock, StateStore
from cogplane.services.catalog import MODEL_NAME, CatalogService

MIN_INSTANCES = (0, 5)
MAX_INSTANCES = (1, 20)
PATCH_FIELDS = ("version", "hardware", "min_instances", "max_instances", "timeout")
MAX_TIMEOUT = 24 * 3600  # a prediction may run at most a day, whatever the deployment says
CREATE_FIELDS = ("name", "model", "version", "hardware", "min_instances", "max_instances")
_UPDATE_RETRIES = 5


def deployment_pool(deployment: Deployment) -> str:
    """The pool of the deployment's current version (cogplane.domain.pools)."""
    return pools.for_deployment(deployment.owner, deployment.name, deployment.version)


def _not_found(owner: str, name: str) -> NotFound:
    return NotFound(f"Deployment {owner}/{name} not found.")


class DeploymentService:
    def __init__(self, state: StateStore, catalog: CatalogService, clock: Clock, hardware: dict[str, str]) -> None:
        self.state = state
        self.catalog = catalog
        self.clock = clock
        self.hardware = hardware

    # --- validation ---------------------------------------------------------------------
    def _model(self, viewer: Account, ref: Any) -> Model:
        if not isinstance(ref, str) or ref.count("/") != 1:
            raise Unprocessable("`model` is required, as `owner/name`.", field="model")
        owner, _, name = ref.partition("/")
        try:
            return self.catalog.get_model(viewer, owner, name)
        except NotFound as exc:
            raise Unprocessable(
                f"Model {ref} does not exist (or perhaps you don't have permission to use it?).",
                field="model",
            ) from exc

    def _version(self, model: Model, version_id: Any) -> Version:
        if not isinstance(version_id, str) or not version_id:
            raise Unprocessable("`version` is required: the id of a version of the model.", field="version")
        version = self.state.get_version(model.owner, model.name, version_id)
        if version is None:
            raise Unprocessable(f"Model {model.full_name} has no version {version_id}.", field="version")
        return version

    def _hardware(self, sku: Any) -> str:
        if not isinstance(sku, str) or sku not in self.hardware:
            raise Unprocessable(
                f"Unknown hardware {sku!r}; this install offers: {', '.join(self.hardware)} (see GET /v1/hardware).",
                field="hardware",
            )
        return sku

    @staticmethod
    def _count(body: dict[str, Any], key: str, bounds: tuple[int, int]) -> int:
        value = body.get(key)
        lo, hi = bounds
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise Unprocessable(f"`{key}` must be an integer from {lo} to {hi}.", field=key)
        return value

    @staticmethod
    def _check_bounds(min_instances: int, max_instances: int, sent: dict[str, Any]) -> None:
        if min_instances > max_instances:
            field = "min_instances" if "min_instances" in sent else "max_instances"
            raise Unprocessable(
                f"`min_instances` ({min_instances}) must not exceed `max_instances` ({max_instances}).",
                field=field,
            )

    @staticmethod
    def _timeout(value: Any) -> float | None:
        """Optional (an extension of Replicate's API): seconds a prediction of this deployment may
        run before it is failed; null means the install's default (30 min)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= MAX_TIMEOUT:
            raise Unprocessable(
                f"`timeout` must be a number of seconds from 1 to {MAX_TIMEOUT}, or null.", field="timeout"
            )
        return float(value)

    # --- create -------------------------------------------------------------------------
    def create(self, viewer: Account, body: dict[str, Any]) -> Deployment:
        """The caller owns the deployment; the model must be visible to them."""
        for key in CREATE_FIELDS:
            if body.get(key) is None:
                raise Unprocessable(f"`{key}` is required.", field=key)
        name = body["name"]
        if not isinstance(name, str) or not MODEL_NAME.match(name):
            raise Unprocessable(
                "`name` must be lowercase letters, digits, '.', '-' and '_', starting with a letter or "
                "digit (at most 100 characters).",
                field="name",
            )
        model = self._model(viewer, body["model"])
        version = self._version(model, body["version"])
        hardware = self._hardware(body["hardware"])
        min_instances = self._count(body, "min_instances", MIN_INSTANCES)
        max_instances = self._count(body, "max_instances", MAX_INSTANCES)
        self._check_bounds(min_instances, max_instances, body)
        now = self.clock.now()
        deployment = Deployment(
            owner=viewer.username,
            name=name,
            model=model.full_name,
            version=version.id,
            hardware=hardware,
            min_instances=min_instances,
            max_instances=max_instances,
            release_number=1,
            release_created_at=now,
            created_by=viewer.username,
            timeout=self._timeout(body.get("timeout")),
        )
        self.state.create_deployment(deployment)  # Conflict (409) if the name is taken
        return deployment

    # --- read ---------------------------------------------------------------------------
    def get(self, viewer: Account, owner: str, name: str) -> Deployment:
        """Deployments are private to their owner (an org's: to its members too): anyone else
        gets 404, as if it did not exist."""
        if not self.catalog.access.can_act_for(viewer, owner):
            raise _not_found(owner, name)
        deployment = self.state.get_deployment(owner, name)
        if deployment is None:
            raise _not_found(owner, name)
        return deployment

    def list(self, viewer: Account, *, cursor: str | None, limit: int) -> Page[Deployment]:
        return self.state.list_deployments(viewer.username, cursor=cursor, limit=limit)

    def creator(self, deployment: Deployment) -> dict[str, Any]:
        """The `created_by` account object (replicate 1.0.7 requires type, username and name)."""
        username = deployment.created_by or deployment.owner
        account = self.state.get_account(username)
        if account is None:
            return {"type": "user", "username": username, "name": username, "avatar_url": None, "github_url": None}
        return {
            "type": account.type if account.type in ("user", "organization") else "user",
            "username": account.username,
            "name": account.name or account.username,
            "avatar_url": account.avatar_url,
            "github_url": account.github_url,
        }

    # --- update -------------------------------------------------------------------------
    def update(self, viewer: Account, owner: str, name: str, body: dict[str, Any]) -> Deployment:
        """Every successful update is a new release (release_number + 1), written only if nobody
        released meanwhile (retried on a fresh read otherwise)."""
        for key in body:
            if key not in PATCH_FIELDS:
                raise Unprocessable(f"`{key}` cannot be changed; send any of: {', '.join(PATCH_FIELDS)}.", field=key)
        if not body:
            raise Unprocessable(f"Send at least one of: {', '.join(PATCH_FIELDS)}.")
        for _ in range(_UPDATE_RETRIES):
            current = self.get(viewer, owner, name)
            changes: dict[str, Any] = {}
            if "version" in body:
                model = self._model(viewer, current.model)
                changes["version"] = self._version(model, body["version"]).id
            if "hardware" in body:
                changes["hardware"] = self._hardware(body["hardware"])
            if "min_instances" in body:
                changes["min_instances"] = self._count(body, "min_instances", MIN_INSTANCES)
            if "max_instances" in body:
                changes["max_instances"] = self._count(body, "max_instances", MAX_INSTANCES)
            if "timeout" in body:
                changes["timeout"] = self._timeout(body["timeout"])
            updated = current.replace(
                **changes,
                release_number=current.release_number + 1,
                release_created_at=self.clock.now(),
                created_by=viewer.username,
            )
            self._check_bounds(updated.min_instances, updated.max_instances, body)
            try:
                self.state.update_deployment(updated, expect_release=current.release_number)
            except Conflict:
                continue  # released meanwhile: apply the changes on top of the new release
            return updated
        raise Conflict(f"Deployment {owner}/{name} kept changing; try again.")

    # --- delete -------------------------------------------------------------------------
    def delete(self, viewer: Account, owner: str, name: str) -> None:
        """Replicate refuses to delete a deployment used in the last 15 minutes; we delete at
        once. Its queued and in-flight predictions still finish: a runner resolves the version from
        the pool name, and the pool's runners idle out afterwards."""
        self.get(viewer, owner, name)
        try:
            self.state.delete_deployment(owner, name)
        except NotFound as exc:
            raise _not_found(owner, name) from exc

    # --- predictions --------------------------------------------------------------------
    def target(self, viewer: Account, owner: str, name: str) -> tuple[Deployment, Model, Version, str]:
        """What a deployment prediction runs: (deployment, model, version, pool)."""
        deployment = self.get(viewer, owner, name)
        m_owner, _, m_name = deployment.model.partition("/")
        try:  # the model may have gone private (or away) since the deployment was made
            model: Model | None = self.catalog.get_model(viewer, m_owner, m_name)
        except NotFound:
            model = None
        version = self.state.get_version(m_owner, m_name, deployment.version) if model else None
        if model is None or version is None:
            raise Unprocessable(
                f"Deployment {owner}/{name} runs {deployment.model}:{deployment.version}, which no "
                "longer exists; update the deployment's version.",
                field="version",
            )
        return deployment, model, version, deployment_pool(deployment)
