"""The cogplane stack: composes one construct per capability; reads its knobs from CDK context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Aspects, CfnOutput, IgnoreMode, Stack, Token
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk.region_info import RegionInfo
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra import constants as c
from infra.constructs.alarms import Alarms
from infra.constructs.api import Api
from infra.constructs.data import Data
from infra.constructs.expirer import Expirer
from infra.constructs.functions import REPO_ROOT, shared_code
from infra.constructs.network import Network
from infra.constructs.streams import Streams
from infra.constructs.webhooks import Webhooks
from infra.constructs.workers import Workers

# What the runner image build needs from the repository: an allow-list, so caches, virtual
# environments and build outputs never reach the Docker build context.
_IMAGE_EXCLUDES = ["*", "!pyproject.toml", "!cogplane", "!gpu_runner", "**/__pycache__", "**/*.pyc"]


def _context(scope: Construct, key: str, default: Any) -> Any:
    value = scope.node.try_get_context(key)
    if value is None:
        return default
    if isinstance(default, dict) and isinstance(value, str):
        return json.loads(value)  # -c cogplane:hardware='{"gpu-t4": "g4dn.2xlarge"}'
    if isinstance(default, bool) and isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    if isinstance(default, int) and not isinstance(default, bool):
        return int(value)
    return value


def hardware_map(scope: Construct) -> dict[str, str]:
    """GPU SKU -> instance type; `cpu` (Fargate) is always there and not part of this map."""
    hardware = _context(scope, c.CTX_HARDWARE, dict(c.GPU_INSTANCE_TYPES))
    if not isinstance(hardware, dict) or not all(isinstance(v, str) for v in hardware.values()):
        raise ValueError(f"{c.CTX_HARDWARE} must be a JSON object of SKU -> EC2 instance type")
    hardware.pop(c.CPU_SKU, None)
    return hardware


def runner_image(scope: Construct) -> ecs.ContainerImage:
    """The runner image: built from gpu_runner/Dockerfile at deploy time (synth only stages the
    build context, no Docker), or an existing image URI (tests, pre-built images)."""
    choice = _context(scope, c.CTX_RUNNER_IMAGE, "asset")
    if choice != "asset":
        return ecs.ContainerImage.from_registry(choice)
    # linux/amd64 whatever the deployer's CPU (an arm64 laptop would otherwise build an image the
    # x86_64 GPU instances and Fargate tasks cannot run)
    return ecs.ContainerImage.from_asset(
        str(REPO_ROOT),
        file="gpu_runner/Dockerfile",
        exclude=_IMAGE_EXCLUDES,
        ignore_mode=IgnoreMode.DOCKER,
        platform=ecr_assets.Platform.LINUX_AMD64,
    )


def lwa_layer_arn(scope: Construct) -> str:
    """The Lambda Web Adapter layer for the stream function: the context's ARN, else the region's
    entry in the map (constants, merged with a context JSON object), else the public layer in the
    stack's region (a CloudFormation reference when the stack is environment-agnostic)."""
    stack = Stack.of(scope)
    value = scope.node.try_get_context(c.CTX_LWA_LAYER)
    arns = dict(c.LWA_LAYER_ARNS)
    if isinstance(value, str) and value.strip().startswith("{"):
        value = json.loads(value)
    if isinstance(value, dict):
        arns.update(value)
    elif value:
        return str(value)
    region = stack.region
    partition = stack.partition
    if not Token.is_unresolved(region):
        if region in arns:
            return arns[region]
        partition = RegionInfo.get(region).partition or "aws"
    return f"arn:{partition}:lambda:{region}:{c.LWA_LAYER_ACCOUNT}:layer:{c.LWA_LAYER_NAME}:{c.LWA_LAYER_VERSION}"


def concurrency(scope: Construct, key: str, default: int) -> int | None:
    """A function's reserved concurrency from context: a number, or `none` for no reservation
    (accounts whose Lambda quota is too small to reserve anything)."""
    value = scope.node.try_get_context(key)
    if value is None:
        return default
    if str(value).strip().lower() in ("none", "off", ""):
        return None
    return int(value)


class CogplaneStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        asset_dir = _context(self, c.CTX_LAMBDA_ASSET, str(REPO_ROOT / ".build" / "lambda"))
        code, complete = shared_code(str(Path(asset_dir)))
        if not complete:
            Annotations.of(self).add_warning_v2(
                "cogplane:lambda-asset",
                f"{asset_dir} is missing: the functions are staged without their dependencies. "
                "Run scripts/package_lambda.sh before `cdk deploy`.",
            )

        data = Data(self, "Data")
        network = Network(self, "Network")
        workers = Workers(
            self,
            "Workers",
            data=data,
            network=network,
            image=runner_image(self),
            hardware=hardware_map(self),
            gpu_max_instances=_context(self, c.CTX_GPU_MAX_INSTANCES, c.GPU_MAX_INSTANCES),
            warm_pool=_context(self, c.CTX_GPU_WARM_POOL, False),
            max_per_pool=_context(self, c.CTX_MAX_PER_POOL, c.MAX_PER_POOL),
        )
        # Built before the API: the API's env refers to the stream URL (never the other way round).
        streams = Streams(
            self,
            "Streams",
            code=code,
            data=data,
            layer_arn=lwa_layer_arn(self),
            reserved_concurrency=concurrency(self, c.CTX_STREAM_CONCURRENCY, c.STREAM_CONCURRENCY),
        )
        api = Api(
            self,
            "Api",
            code=code,
            data=data,
            workers=workers,
            stream_url=streams.url,
            reserved_concurrency=concurrency(self, c.CTX_API_CONCURRENCY, c.API_CONCURRENCY),
        )
        webhooks = Webhooks(self, "Webhooks", code=code, data=data, public_url=api.public_url, stream_url=streams.url)
        expirer = Expirer(self, "Expirer", code=code, data=data, workers=workers)
        self.alarms = Alarms(
            self,
            "Alarms",
            data=data,
            api=api,
            streams=streams,
            webhooks=webhooks,
            expirer=expirer,
            workers=workers,
            email=_context(self, c.CTX_ALARM_EMAIL, "") or None,
            account_concurrency=_context(self, c.CTX_ACCOUNT_CONCURRENCY, c.ACCOUNT_CONCURRENCY),
        )

        CfnOutput(
            self,
            "ApiUrl",
            value=api.public_url,
            description="REPLICATE_BASE_URL (Python client) / baseUrl + '/v1' (JS client)",
        )
        CfnOutput(
            self,
            "StreamUrl",
            value=streams.url,
            description="Where urls.stream points (SSE through the stream function; no setup needed)",
        )
        CfnOutput(
            self,
            "AdminTokenCommand",
            value=f"aws secretsmanager get-secret-value --secret-id {data.admin_token_secret.secret_arn} "
            "--query SecretString --output text",
            description="Prints the first admin's API token (active within a minute of the first deploy)",
        )
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.alarms.topic.topic_arn,
            description="SNS topic of the stack's alarms (subscribe, or deploy with -c cogplane:alarmEmail=...)",
        )
        CfnOutput(self, "TableName", value=data.table.table_name)
        CfnOutput(self, "BucketName", value=data.bucket.bucket_name)
        CfnOutput(self, "ClusterName", value=workers.cluster.cluster_name)


def add_checks(stack: Stack) -> None:
    Aspects.of(stack).add(AwsSolutionsChecks(verbose=True))
