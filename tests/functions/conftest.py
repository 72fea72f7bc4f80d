"""Fixtures for the deployed edges: fake AWS credentials, moto clients, the stack's env vars."""

from __future__ import annotations

import json

import pytest

from cogplane.adapters.aws.ecs import EcsConfig
from tests.conftest import fake_aws_credentials

REGION = "us-east-1"
TABLE = "cogplane-state"
BUCKET = "cogplane-blobs"
QUEUE_PREFIX = "cogplane-pool-"
CLUSTER = "cogplane-runners"


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


def _register(ecs, family: str, gpu: bool) -> str:
    container = {"name": "runner", "image": "runner:latest", "memory": 1024, "essential": True}
    kwargs: dict = {"family": family, "containerDefinitions": [container]}
    if gpu:  # as the stack's GPU runner definitions (infra/constructs/workers.py)
        container["resourceRequirements"] = [{"type": "GPU", "value": "1"}]
        container["linuxParameters"] = {"capabilities": {"add": ["NET_ADMIN"]}}
        container["mountPoints"] = [{"sourceVolume": "cache", "containerPath": "/var/cogplane/cache"}]
        kwargs.update(networkMode="bridge", volumes=[{"name": "cache", "host": {"sourcePath": "/var/lib/cogplane"}}])
    if not gpu:
        kwargs.update(networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="2048", memory="8192")
    return ecs.register_task_definition(**kwargs)["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture
def cluster(aws):
    ecs, ec2 = aws["ecs"], aws["ec2"]
    ecs.create_cluster(clusterName=CLUSTER)
    # moto places EC2-provider tasks only on registered container instances (docs/moto-notes.md: ECS).
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    document = {
        "instanceId": instance["InstanceId"],
        "instanceType": instance["InstanceType"],
        "availabilityZone": instance["Placement"]["AvailabilityZone"],
        "region": "us-east-1",
        "imageId": instance["ImageId"],
        "privateIp": instance.get("PrivateIpAddress"),
    }
    ecs.register_container_instance(cluster=CLUSTER, instanceIdentityDocument=json.dumps(document))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})  # as the stack's VPC
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="runners", Description="runners", VpcId=vpc)["GroupId"]
    return EcsConfig(
        cluster=CLUSTER,
        task_definitions={
            "cpu": _register(ecs, "runner-cpu", gpu=False),
            "gpu-t4": _register(ecs, "runner-gpu-t4", gpu=True),
        },
        capacity_providers={"gpu-t4": "cogplane-gpu-t4"},
        subnets=[subnet],
        security_groups=[sg],
        max_per_pool=2,
    )
