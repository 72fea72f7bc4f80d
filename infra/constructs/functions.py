"""The Lambda functions share one code asset (cogplane + functions + Linux wheels) and
differ only in their handler, environment and grants (and the stream function's LWA layer)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, IgnoreMode
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra.constructs.nag import suppress

RUNTIME = lambda_.Runtime.PYTHON_3_12
REPO_ROOT = Path(__file__).resolve().parents[2]

# When the staged asset has not been built (offline `make synth`), the sources alone are staged so
# synth still works; `cdk deploy` needs scripts/package_lambda.sh first (it adds the wheels).
# (.dockerignore semantics: exclude everything, then allow the two packages back in.)
_SOURCE_ONLY_EXCLUDES = ["*", "!cogplane", "!functions", "**/__pycache__", "**/*.pyc"]


def shared_code(asset_dir: str | None) -> tuple[lambda_.Code, bool]:
    """(the code asset, whether it is the full staged one with dependencies)."""
    if asset_dir and Path(asset_dir).is_dir():
        return lambda_.Code.from_asset(asset_dir), True
    return lambda_.Code.from_asset(str(REPO_ROOT), exclude=_SOURCE_ONLY_EXCLUDES, ignore_mode=IgnoreMode.DOCKER), False


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    code: lambda_.Code,
    handler: str,
    environment: dict[str, str],
    memory_mb: int,
    timeout: Duration,
    description: str,
    reserved_concurrency: int | None = None,
) -> lambda_.Function:
    log_group = logs.LogGroup(scope, f"{construct_id}Logs", retention=c.LOG_RETENTION)
    fn = lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=lambda_.Architecture.X86_64,  # the staged wheels are manylinux x86_64
        code=code,
        handler=handler,
        memory_size=memory_mb,
        timeout=timeout,
        environment={
            **environment,
            "POWERTOOLS_SERVICE_NAME": "cogplane",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        log_group=log_group,
        description=description,
        reserved_concurrent_executions=reserved_concurrency,
    )
    suppress(
        fn,
        {
            "AwsSolutions-IAM4": "AWSLambdaBasicExecutionRole only grants writing this function's logs.",
            "AwsSolutions-L1": "Pinned to Python 3.12 on purpose: the staged wheels are built for it.",
        },
        applies_to={
            "AwsSolutions-IAM4": [
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            ]
        },
    )
    return fn
