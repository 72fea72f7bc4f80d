"""The registry client against a fake OCI registry (httpx MockTransport): a manifest list, a
linux/amd64 manifest and a config blob with cog's labels, behind a 401 bearer challenge; and
`cogplane push --image` end to end against the API (TestClient)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from cogplane.registry import (
    DOCKER_LIST,
    OCI_MANIFEST,
    RegistryError,
    ecr_credentials,
    ecr_registry,
    inspect_image,
    parse_image,
)
from functions.api.app import create_app
from tests.conftest import HELLO_SCHEMA

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPO = "cogplane/alice/hello"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Serves one image; the v2 API wants a bearer token from /token, which wants basic auth."""

    def __init__(self, *, labels: dict[str, str] | None = None, user=("AWS", "secret"), as_list=True):
        labels = (
            {"run.cog.openapi_schema": json.dumps(HELLO_SCHEMA), "run.cog.version": "0.14.3"}
            if labels is None
            else labels
        )
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels}}).encode()
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(self.config),
                    "size": len(self.config),
                },
                "layers": [],
            }
        ).encode()
        arm = "sha256:" + "e" * 64
        self.index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_LIST,
                "manifests": [
                    {"digest": arm, "mediaType": OCI_MANIFEST, "platform": {"os": "linux", "architecture": "arm64"}},
                    {
                        "digest": _digest(self.manifest),
                        "mediaType": OCI_MANIFEST,
                        "platform": {"os": "linux", "architecture": "amd64"},
                    },
                ],
            }
        ).encode()
        self.top = self.index if as_list else self.manifest
        self.user = user
        self.requests: list[httpx.Request] = []

    @property
    def digest(self) -> str:
        return _digest(self.top)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/token":
            expected = "Basic " + base64.b64encode(":".join(self.user).encode()).decode()
            if request.headers.get("authorization") != expected:
                return httpx.Response(401)
            assert request.url.params["scope"] == f"repository:{REPO}:pull"
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("authorization") != "Bearer t0k":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="https://{HOST}/token",service="{HOST}",scope="repository:{REPO}:pull"'
                    )
                },
            )
        base = f"/v2/{REPO}"
        if path in (f"{base}/manifests/v1", f"{base}/manifests/{self.digest}"):
            assert "application/vnd.oci.image.index.v1+json" in request.headers["accept"]
            media = DOCKER_LIST if self.top is self.index else OCI_MANIFEST
            return httpx.Response(
                200, content=self.top, headers={"Content-Type": media, "Docker-Content-Digest": self.digest}
            )
        if path == f"{base}/manifests/{_digest(self.manifest)}":
            return httpx.Response(200, content=self.manifest, headers={"Content-Type": OCI_MANIFEST})
        if path == f"{base}/blobs/{_digest(self.config)}":
            return httpx.Response(200, content=self.config)
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})


class FakeEcr:
    def get_authorization_token(self, registryIds):  # noqa: N803 - boto3's names
        assert registryIds == ["123456789012"]
        token = base64.b64encode(b"AWS:secret").decode()
        return {"authorizationData": [{"authorizationToken": token}]}


def test_image_references_parse_like_docker():
    ref = parse_image(f"{HOST}/{REPO}:v1")
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (HOST, REPO, "v1", None)
    assert parse_image("ubuntu").name == "registry-1.docker.io/library/ubuntu"
    assert parse_image("localhost:5000/a/b").host == "localhost:5000"
    pinned = parse_image(f"{HOST}/{REPO}@sha256:" + "a" * 64)
    assert pinned.reference == "sha256:" + "a" * 64
    with pytest.raises(RegistryError):
        parse_image(f"{HOST}/{REPO}@sha256:short")
    assert ecr_registry(HOST) == ("123456789012", "us-east-1")
    assert ecr_registry("ghcr.io") is None
    assert ecr_credentials(HOST, FakeEcr()) == ("AWS", "secret")


@pytest.mark.parametrize("as_list", [True, False])
def test_labels_are_read_through_the_bearer_challenge_for_linux_amd64(as_list):
    registry = FakeRegistry(as_list=as_list)
    info = inspect_image(f"{HOST}/{REPO}:v1", ecr_client=FakeEcr(), transport=httpx.MockTransport(registry))
    assert info.digest == registry.digest
    assert info.version_id == registry.digest.split(":")[1] and len(info.version_id) == 64
    assert info.image == f"{HOST}/{REPO}@{registry.digest}"
    assert info.openapi_schema == HELLO_SCHEMA
    assert info.cog_version == "0.14.3"
    # one challenge, one token, then everything with the token
    assert [r.url.path for r in registry.requests].count("/token") == 1


def test_wrong_credentials_missing_image_and_non_cog_images_are_clear_errors():
    registry = FakeRegistry(user=("AWS", "other"))
    with pytest.raises(RegistryError, match="token service answered 401"):
        inspect_image(f"{HOST}/{REPO}:v1", ecr_client=FakeEcr(), transport=httpx.MockTransport(registry))
    with pytest.raises(RegistryError, match="not found"):
        inspect_image(f"{HOST}/{REPO}:nope", ecr_client=FakeEcr(), transport=httpx.MockTransport(FakeRegistry()))
    plain = inspect_image(
        f"{HOST}/{REPO}:v1", ecr_client=FakeEcr(), transport=httpx.MockTransport(FakeRegistry(labels={}))
    )
    with pytest.raises(RegistryError, match="cog build"):
        _ = plain.openapi_schema


def _args(**kw):
    base = {
        "model": "alice/hello",
        "image": f"{HOST}/{REPO}:v1",
        "public": False,
        "hardware": "gpu-t4",
        "description": None,
        "dir": None,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def test_cli_registers_an_image_version_end_to_end(services, tmp_path, monkeypatch, capsys):
    from cogplane import registry
    from local import cli

    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", "r8_alice-token-0123456789")
    services.hardware["gpu-t4"] = "Nvidia T4 GPU"
    api = TestClient(create_app(services))
    fake = FakeRegistry()
    monkeypatch.setattr(registry, "ecr_credentials", lambda host, client=None: ("AWS", "secret"))
    args = _args(registry_transport=httpx.MockTransport(fake))

    code = cli.push_image(
        args, url="http://testserver", token="r8_alice-token-0123456789", home=tmp_path, transport=api._transport
    )
    assert code == 0
    version_id = capsys.readouterr().out.strip()
    assert version_id == fake.digest.split(":")[1]
    stored = services.state.get_version("alice", "hello", version_id)
    assert stored.kind == "image" and stored.image == f"{HOST}/{REPO}@{fake.digest}"
    assert stored.cog_version == "0.14.3" and stored.openapi_schema == HELLO_SCHEMA
    model = services.state.get_model("alice", "hello")
    assert model.hardware == "gpu-t4" and model.latest_version_id == version_id

    # again: the same version (200), still one version
    assert (
        cli.push_image(
            args, url="http://testserver", token="r8_alice-token-0123456789", home=tmp_path, transport=api._transport
        )
        == 0
    )
    assert "unchanged" in capsys.readouterr().err
    assert len(services.state.list_versions("alice", "hello").items) == 1


def test_the_api_refuses_unpinned_images_and_schemaless_bodies(services):
    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", "r8_alice-token-0123456789")
    api = TestClient(create_app(services), headers={"Authorization": "Bearer r8_alice-token-0123456789"})
    assert api.post("/v1/models", json={"owner": "alice", "name": "m"}).status_code == 201
    r = api.post("/v1/models/alice/m/versions", json={"image": f"{HOST}/{REPO}:v1", "openapi_schema": HELLO_SCHEMA})
    assert r.status_code == 422 and "digest" in r.text
    r = api.post("/v1/models/alice/m/versions", json={"image": f"{HOST}/{REPO}@sha256:" + "a" * 64})
    assert r.status_code == 422 and "openapi_schema" in r.text
    r = api.post(
        "/v1/models/alice/m/versions",
        json={"image": f"{HOST}/{REPO}@sha256:" + "a" * 64, "openapi_schema": HELLO_SCHEMA},
    )
    assert r.status_code == 201 and r.json()["id"] == "a" * 64


def test_an_images_concurrency_comes_from_its_run_cog_config_label(services, tmp_path, monkeypatch, capsys):
    """`cog build` folds `@concurrent(max=N)` into the `run.cog.config` label (and bakes
    COG_MAX_CONCURRENCY into the image): the version keeps it, so the runner sends N at once."""
    from cogplane import registry
    from cogplane.cogconfig import effective_concurrency
    from local import cli

    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", "r8_alice-token-0123456789")
    services.hardware["gpu-t4"] = "Nvidia T4 GPU"
    api = TestClient(create_app(services))
    config = {
        "build": {"python_version": "3.12"},
        "run": "run.py:Runner",
        "concurrency": {"max": 4},
        "environment": ["NAME=michael"],
    }
    fake = FakeRegistry(
        labels={
            "run.cog.openapi_schema": json.dumps(HELLO_SCHEMA),
            "run.cog.version": "0.23.1",
            "run.cog.config": json.dumps(config),
        }
    )
    monkeypatch.setattr(registry, "ecr_credentials", lambda host, client=None: ("AWS", "secret"))
    assert (
        cli.push_image(
            _args(registry_transport=httpx.MockTransport(fake)),
            url="http://testserver",
            token="r8_alice-token-0123456789",
            home=tmp_path,
            transport=api._transport,
        )
        == 0
    )
    stored = services.state.get_version("alice", "hello", capsys.readouterr().out.strip())
    assert stored.config == config and effective_concurrency(stored.config) == 4
    shown = api.get(
        f"/v1/models/alice/hello/versions/{stored.id}", headers={"Authorization": "Bearer r8_alice-token-0123456789"}
    ).json()
    assert shown["environment"] == ["NAME"] and "michael" not in json.dumps(shown)
    # a bad concurrency is refused; no config at all is fine (one at a time)
    api.headers["Authorization"] = "Bearer r8_alice-token-0123456789"
    image = f"{HOST}/{REPO}@sha256:" + "b" * 64
    r = api.post(
        "/v1/models/alice/hello/versions",
        json={"image": image, "openapi_schema": HELLO_SCHEMA, "config": {"concurrency": {"max": 0}}},
    )
    assert r.status_code == 422 and "concurrency.max" in r.json()["detail"]
    r = api.post(
        "/v1/models/alice/hello/versions", json={"image": image, "openapi_schema": HELLO_SCHEMA, "config": "x"}
    )
    assert r.status_code == 422
    assert services.state.get_version("alice", "hello", "b" * 64) is None
