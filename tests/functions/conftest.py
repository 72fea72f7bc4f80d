"""Fixtures for the deployed edges: fake AWS credentials, moto clients, the stack's env vars."""

from __future__ import annotations

import pytest

REGION = "us-east-1"
TABLE = "cogplane-state"
BUCKET = "cogplane-blobs"
QUEUE_PREFIX = "cogplane-pool-"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, so no test can ever reach a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


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
