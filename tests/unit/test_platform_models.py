"""The platform's own models ship their schema beside their folder (the Lambda asset cannot run
cog's inspector with the model's packages): it must be what `cogplane push` generates, and the
folder's bundle (whose sha256 is the version id) must not contain it."""

from __future__ import annotations

import io
import tarfile

import pytest

from cogplane.bundle import make_bundle
from cogplane.domain.ids import version_id_for
from cogplane.push import prepare
from cogplane.services.platform_models import PLATFORM_MODELS, committed_schema, schema_path

FOLDERS = sorted(p for p in PLATFORM_MODELS.iterdir() if (p / "cog.yaml").is_file())


def test_the_safety_checker_is_a_platform_model():
    assert [p.name for p in FOLDERS] == ["safety-checker"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_the_committed_schema_is_what_cogplane_push_generates(folder):
    # the predictor imports its packages in setup(), so cog alone (this venv) reads its signature
    generated = prepare(folder).schema
    assert generated == committed_schema(folder), (
        f"{schema_path(folder)} is out of date: regenerate it with "
        f"`python -c 'import json; from cogplane.push import prepare; "
        f'print(json.dumps(prepare("{folder.relative_to(PLATFORM_MODELS.parents[1])}").schema, indent=2, '
        f"sort_keys=True))' > {schema_path(folder).relative_to(PLATFORM_MODELS.parents[1])}`"
    )
    assert {"Input", "Output"} <= set(generated["components"]["schemas"])


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_the_bundle_is_the_folder_alone_and_its_id_is_pushs(folder):
    bundle = make_bundle(folder)
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        names = tar.getnames()
    assert "cog.yaml" in names and not any(name.endswith(".json") for name in names), names
    assert prepare(folder, with_schema=False).version_id == version_id_for(bundle)
