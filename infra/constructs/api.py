"""The HTTPS API: API Gateway (REST, Regional) -> the API Lambda (FastAPI through Mangum).

API Gateway REST integrations time out at 29 s while `Prefer: wait` allows 60: the deployed API
caps the wait at 25 s (COGPLANE_MAX_WAIT_SECONDS) and then answers with the prediction's current
state (`starting`/`processing`); both official clients then poll until it completes.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra.constructs.data import Data
from infra.constructs.functions import python_function
from infra.constructs.nag import suppress
from infra.constructs.workers import Workers


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        data: Data,
        workers: Workers,
        stream_url: str = "",
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "ApiFunction",
            code=code,
            handler="functions.api.handler.handler",
            environment={
                **data.environment(),
                **workers.dispatch_environment(),
                "COGPLANE_MAX_WAIT_SECONDS": str(c.API_MAX_WAIT_SECONDS),
                "COGPLANE_SIGNING_SECRET_ARN": data.signing_secret.secret_arn,
                # image versions only from this account's model repositories (the runners' pull rights)
                "COGPLANE_IMAGE_REPOSITORIES": (
                    f"{Stack.of(scope).account}.dkr.ecr.{Stack.of(scope).region}.amazonaws.com/"
                    f"{c.MODEL_REPOSITORY_PREFIX}"
                ),
            },
            memory_mb=c.API_MEMORY_MB,
            timeout=c.API_TIMEOUT,
            description="cogplane API (Replicate-compatible HTTP API)",
            reserved_concurrency=reserved_concurrency,
        )
        data.table.grant_read_write_data(self.function)
        data.bucket.grant_read_write(self.function)
        data.grant_pool_queues(self.function)
        data.signing_secret.grant_read(self.function)
        workers.grant_dispatch(self.function)
        suppress(
            self.function,
            {
                "AwsSolutions-IAM5": "Wildcards are scoped: bucket objects, table indexes, the stack's pool queues "
                "({stack}-pool-*), runner task-definition revisions, this cluster's tasks.",
            },
        )

        access_logs = logs.LogGroup(self, "AccessLogs", retention=c.LOG_RETENTION)
        self.rest_api = apigw.LambdaRestApi(
            self,
            "RestApi",
            handler=self.function,
            proxy=True,  # ANY / and ANY /{proxy+}: FastAPI does the routing
            description="cogplane API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Uploads (multipart), files and images pass through as bytes; Mangum base64-decodes.
            binary_media_types=["*/*"],
            deploy_options=apigw.StageOptions(
                stage_name=c.API_STAGE,
                throttling_rate_limit=c.API_THROTTLE_RATE,
                throttling_burst_limit=c.API_THROTTLE_BURST,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
            ),
            cloud_watch_role=True,
        )
        suppress(
            self.rest_api,
            {
                "AwsSolutions-APIG2": "Requests are validated by the application (FastAPI + the model's schema).",
                "AwsSolutions-APIG3": "WAF is an opt-in cost; the stage is throttled.",
                "AwsSolutions-APIG4": "Authorisation is the Replicate API's bearer token, checked by the "
                "application; public model pages are readable without a token.",
                "AwsSolutions-COG4": "Clients authenticate with Replicate-style API tokens, not Cognito.",
                "AwsSolutions-IAM4": "API Gateway's account-level CloudWatch role uses the AWS-managed "
                "AmazonAPIGatewayPushToCloudWatchLogs policy.",
                "AwsSolutions-APIG6": "Execution logging is on at ERROR level for every method (stage-wide).",
            },
        )

        # The URL clients use (REPLICATE_BASE_URL); built from the API id, not the stage resource,
        # so the function can know its own URL without a dependency cycle. Absolute URLs in
        # responses (urls.get, next pages) need it: API Gateway hides the stage from the app.
        stack = Stack.of(self)
        self.public_url = (
            f"https://{self.rest_api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}/{c.API_STAGE}"
        )
        self.function.add_environment("COGPLANE_PUBLIC_URL", self.public_url)
        if stream_url:  # urls.stream: the stream function's Function URL (infra/constructs/streams.py)
            self.function.add_environment("COGPLANE_STREAM_URL", stream_url)
