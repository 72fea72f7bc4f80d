"""Deployed push (DynamoDB/S3 on moto): `build.system_packages` must be in the runner image's set."""

from __future__ import annotations

import pytest

from cogplane import cogconfig
from cogplane.domain.errors import Unprocessable
from tests.conftest import HELLO_SCHEMA, make_bundle


def test_deployed_push_accepts_the_runner_image_set_and_refuses_others(aws):
    from cogplane.settings import Settings
    from cogplane.wiring import build

    services = build(Settings())
    alice = services.accounts.ensure_account("alice")
    services.catalog.create_model(alice, {"owner": "alice", "name": "pkgs"})

    def push(packages: list[str]):
        config = {"predict": "predict.py:Predictor", "build": {"system_packages": packages}}
        bundle = make_bundle({"cog.yaml": "predict: predict.py:Predictor\n", "predict.py": repr(packages)})
        return services.catalog.push_version(
            alice, "alice", "pkgs", bundle=bundle, schema=HELLO_SCHEMA, config=config, cog_version="0.23.1"
        )

    version, created = push(["ffmpeg", "libgl1", "libglib2.0-0", "libsm6", "libxext6", "libxrender1"])
    assert created and services.state.get_version("alice", "pkgs", version.id) is not None
    with pytest.raises(Unprocessable) as info:
        push(["ffmpeg", "texlive-full", "octave"])
    assert "texlive-full, octave are not installed in the runner image" in info.value.detail
    assert "ffmpeg" in info.value.detail  # the set it does provide is named
    assert [v.id for v in services.state.list_versions("alice", "pkgs").items] == [version.id]
    assert services.catalog.packages_where == cogconfig.RUNNER_IMAGE
