"""Fixtures for the deployed edges: fake AWS credentials, moto clients, the stack's env vars."""

from __future__ import annotations

import pytest

from tests.conftest import fake_aws_credentials

REGION = "us-east-1"
TABLE = "cogplane-state"
BUCKET = "cogplane-blobs"
QUEUE_PREFIX = "cogplane-pool-"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_credentials(monkeypatch, REGION)


@pytest.fixture
def deployed_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    """The environment the stack gives the functions (infra/constructs/data.py)."""
    env = {
        "COGPLANE_BACKEND": "aws",
        "COGPLANE_TABLE_NAME": TABLE,
        "COGPLANE_BUCKET": BUCKET,
        "COGPLANE_QUEUE_PREFIX": QUEUE_PREFIX,
        "COGPLANE_MAX_WAIT_SECONDS": "25",
        "COGPLANE_HOME": str(tmp_path / "home"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def aws(deployed_env):
    """moto's in-process AWS with the stack's table and bucket; yields boto3 clients."""
    import boto3
    from moto import mock_aws

    from cogplane import resources

    with mock_aws():
        clients = {name: boto3.client(name, region_name=REGION) for name in ("dynamodb", "sqs", "s3", "ecs", "ec2")}
        clients["dynamodb"].create_table(**resources.create_table_kwargs(TABLE))
        clients["s3"].create_bucket(Bucket=BUCKET)
        yield clients
