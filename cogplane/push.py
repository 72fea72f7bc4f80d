"""Pushing a model folder as a source version: bundle + schema (no Docker, no Go CLI)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cogplane.bundle import BundleError, make_bundle, read_config
from cogplane.cogconfig import ConfigError, parse_environment, with_decorator_concurrency
from cogplane.domain.ids import version_id_for
from cogplane.schema import SchemaError, generate_schema

if TYPE_CHECKING:
    from collections.abc import Callable

COG_VERSION = "0.23.1"


@dataclass
class Prepared:
    bundle: bytes
    version_id: str
    config: dict[str, Any]
    schema: dict[str, Any] | None


def prepare(
    model_dir: str | Path,
    *,
    with_schema: bool = True,
    env_cache: Path | None = None,
    installer: str | None = None,
    on_log: Callable[[str], None] = lambda line: None,
) -> Prepared:
    """Bundle the folder and generate its schema with cog's inspector.

    The predictor is imported with this Python first; if that fails because the model's own
    packages are missing and cog.yaml lists packages, its environment is built (cached, the same
    one the runner uses) and the schema is generated there."""
    model_dir = Path(model_dir).resolve()
    config = read_config(model_dir)
    try:  # refused here before the upload; the API checks again (and checks system packages)
        parse_environment(config)
        # the decorator's max folded into `concurrency`, as in cog's run.cog.config label
        config = with_decorator_concurrency(config, model_dir)
    except ConfigError as exc:
        raise BundleError(str(exc)) from exc
    bundle = make_bundle(model_dir)
    schema = None
    if with_schema:
        try:
            schema = generate_schema(model_dir, python=sys.executable)
        except SchemaError as first:
            build = config.get("build") or {}
            if "No module named" not in str(first) or not (
                build.get("python_packages") or build.get("python_requirements")
            ):
                raise
            from cogplane.environments import ensure_environment

            on_log(f"{first}; building the model's environment to inspect it")
            cache = env_cache or Path.home() / ".cache" / "cogplane" / "envs"
            env = ensure_environment(config, model_dir, cache, on_log=on_log, installer=installer)
            schema = generate_schema(model_dir, python=str(env / "bin" / "python"))
    return Prepared(bundle=bundle, version_id=version_id_for(bundle), config=config, schema=schema)
