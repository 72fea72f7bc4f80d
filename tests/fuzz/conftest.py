"""The API on each adapter set (SQLite + disk, and DynamoDB + S3 + SQS under moto), with what a
test needs to prove that a refused request stored nothing: every record and every blob key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cogplane.settings import Settings
from cogplane.wiring import Services, build_aws, build_local
from functions.api.app import create_app
from tests.conftest import HELLO_SCHEMA, fake_aws_credentials, make_bundle

TOKEN = "r8_fuzz-token-0123456789abcdef"
REGION = "us-east-1"
TABLE, BUCKET, QUEUE_PREFIX = "cogplane-fuzz-state", "cogplane-fuzz-blobs", "cogplane-fuzz-pool-"
BACKENDS = ["local", "aws"]


@dataclass
class Stack:
    backend: str
    services: Services
    client: TestClient
    blob_keys: Any  # () -> set of every stored blob's key

    def stored(self) -> dict[str, Any]:
        """Everything the state store and the blob store hold for the test account."""
        state = self.services.state
        model = state.get_model("alice", "hello")
        return {
            "predictions": sorted(p.id for p in state.list_predictions("alice", limit=1000).items),
            "versions": sorted(v.id for v in state.list_versions("alice", "hello", limit=1000).items),
            "latest": model.latest_version_id if model else None,
            "files": sorted(f.id for f in state.list_files("alice", limit=1000).items),
            "blobs": sorted(self.blob_keys()),
        }

    def push(self, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        """A good source version of alice/hello (the model is created on first use)."""
        r = self.client.post("/v1/models", json={"owner": "alice", "name": "hello", "visibility": "private"})
        assert r.status_code in (201, 409), r.text
        r = self.client.post(
            "/v1/models/alice/hello/versions",
            files={
                "bundle": (
                    "bundle.tar.gz",
                    make_bundle({"cog.yaml": "predict: p.py:P\n", "p.py": "x"}),
                    "application/gzip",
                )
            },
            data={"schema": json.dumps(schema or HELLO_SCHEMA), "config": json.dumps({"predict": "p.py:P"})},
        )
        assert r.status_code in (200, 201), r.text
        return r.json()


def _local(tmp_path) -> tuple[Services, Any]:
    settings = Settings(home=tmp_path / "home", public_url="https://cogplane.test")
    services = build_local(settings, base_url=settings.public_url)
    data = settings.blob_root / "data"

    def keys() -> set[str]:
        return {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()} if data.exists() else set()

    return services, keys


@pytest.fixture(params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> Iterator[Stack]:
    if request.param == "local":
        services, keys = _local(tmp_path)
        yield _stack("local", services, keys)
        return
    import boto3
    from moto import mock_aws

    from cogplane import resources

    fake_aws_credentials(monkeypatch, REGION)
    with mock_aws():
        clients = {name: boto3.client(name, region_name=REGION) for name in ("dynamodb", "sqs", "s3")}
        clients["dynamodb"].create_table(**resources.create_table_kwargs(TABLE))
        clients["s3"].create_bucket(Bucket=BUCKET)
        settings = Settings(
            backend="aws",
            home=tmp_path / "home",
            public_url="https://cogplane.test",
            table_name=TABLE,
            bucket=BUCKET,
            queue_prefix=QUEUE_PREFIX,
            secrets_key="fuzz-secrets-key-0123456789abcdef",
        )
        services = build_aws(settings, clients=clients)

        def keys() -> set[str]:
            pages = clients["s3"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            return {o["Key"] for page in pages for o in page.get("Contents", [])}

        yield _stack("aws", services, keys)


def _stack(backend: str, services: Services, keys) -> Stack:
    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", TOKEN)
    client = TestClient(
        create_app(services), headers={"Authorization": f"Bearer {TOKEN}"}, raise_server_exceptions=False
    )
    return Stack(backend, services, client, keys)
