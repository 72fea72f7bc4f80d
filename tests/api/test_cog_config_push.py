"""Push checks what cog's CLI would refuse and what the runners' machine lacks (local: this host)."""

from __future__ import annotations

import json
import shutil

import pytest
import replicate.version as rv

from tests.conftest import make_bundle


def _push(client, schema, config: dict, owner="alice", name="cfg"):
    client.post("/v1/models", json={"owner": owner, "name": name, "visibility": "private"})
    bundle = make_bundle({"cog.yaml": "predict: predict.py:Predictor\n", "predict.py": json.dumps(config)})
    return client.post(
        f"/v1/models/{owner}/{name}/versions",
        files={"bundle": ("bundle.tar.gz", bundle, "application/gzip")},
        data={"schema": json.dumps(schema), "config": json.dumps(config)},
    )


def test_version_shows_the_environment_names_never_the_values(client, schema):
    config = {"predict": "predict.py:Predictor", "environment": ["NAME=michael", "HF_HOME=/tmp/hf-secret-path"]}
    r = _push(client, schema, config)
    assert r.status_code == 201, r.text
    assert r.json()["environment"] == ["HF_HOME", "NAME"]
    shown = client.get(f"/v1/models/alice/cfg/versions/{r.json()['id']}").text
    assert "michael" not in shown and "hf-secret-path" not in shown
    rv.Version(**r.json())  # the official client still reads it
    plain = _push(client, schema, {"predict": "predict.py:Predictor"}, name="plain")
    assert plain.json()["environment"] == []


@pytest.mark.parametrize(
    "config, words",
    [
        ({"environment": ["PATH=/evil"]}, "PATH"),
        ({"environment": ["COG_MAX_CONCURRENCY=9"]}, "COG_MAX_CONCURRENCY"),
        ({"environment": ["NOEQUALS"]}, "KEY=VALUE"),
        ({"environment": "A=1"}, "must be a list"),
        ({"concurrency": {"max": 0}}, "concurrency.max"),
        ({"build": {"system_packages": ["not a package"]}}, "not a Debian package name"),
    ],
)
def test_refused_configs_are_422_and_store_nothing(client, schema, config, words):
    r = _push(client, schema, {"predict": "predict.py:Predictor", **config})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]
    assert client.get("/v1/models/alice/cfg/versions").json()["results"] == []


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-like host")
def test_system_packages_this_host_lacks_are_refused_by_name(client, schema):
    config = {
        "predict": "predict.py:Predictor",
        "build": {"system_packages": ["dpkg", "cogplane-no-such-pkg", "cogplane-nor-this"]},
    }
    r = _push(client, schema, config)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "cogplane-no-such-pkg, cogplane-nor-this are not installed on this machine" in detail
    assert "apt-get install cogplane-no-such-pkg cogplane-nor-this" in detail
    assert "dpkg," not in detail  # installed here: not named
    assert client.get("/v1/models/alice/cfg/versions").json()["results"] == []
    ok = _push(client, schema, {"predict": "predict.py:Predictor", "build": {"system_packages": ["dpkg"]}})
    assert ok.status_code == 201, ok.text
