"""Prediction streams (SSE) that outlive API Gateway's 29 s and reach clients unbuffered.

API Gateway REST buffers a Lambda proxy response and cuts it at 29 s, and the Python managed
runtime has no response streaming of its own. So the same FastAPI app also runs in a second
function under the AWS Lambda Web Adapter (LWA) layer: `functions/stream/run.sh` starts uvicorn on
127.0.0.1:8080, the adapter relays each request of a Lambda Function URL in RESPONSE_STREAM mode to
it and streams the body back as it is written. The API function puts this URL into `urls.stream`
(COGPLANE_STREAM_URL); the paths stay `/v1/predictions/{id}/stream` and `/v1/files/streams/{id}`.

The Function URL has no authorisation (auth type NONE): stream URLs are capability URLs (the
prediction id is 130 random bits, shown only to its creator; the routes ignore Authorization, and
the JS client sends none). The server answers only the stream routes and its readiness check
(functions/stream/server.py), and the function may only read the table and the bucket (signed
output URLs). Idle, it costs nothing: one invocation per open stream, billed while it is open.
"""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import constants as c
from infra.constructs.data import Data
from infra.constructs.functions import python_function
from infra.constructs.nag import suppress


def stream_environment() -> dict[str, str]:
    """What the Lambda Web Adapter reads (https://github.com/aws/aws-lambda-web-adapter)."""
    return {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",  # the layer's wrapper: runs the handler script
        "AWS_LWA_INVOKE_MODE": "response_stream",  # must match the Function URL's invoke mode
        "PORT": str(c.STREAM_PORT),
        "AWS_LWA_READINESS_CHECK_PATH": c.STREAM_READINESS_PATH,
    }


class Streams(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        data: Data,
        layer_arn: str,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "StreamFunction",
            code=code,
            handler=c.STREAM_HANDLER,
            environment={
                **data.environment(),
                **stream_environment(),
                "COGPLANE_SIGNING_SECRET_ARN": data.signing_secret.secret_arn,
            },
            memory_mb=c.STREAM_MEMORY_MB,
            timeout=c.STREAM_TIMEOUT,
            description="cogplane prediction streams (SSE) through the Lambda Web Adapter",
            # the Function URL is public: this caps how many streams (and their bill) run at once
            reserved_concurrency=reserved_concurrency,
        )
        self.function.add_layers(lambda_.LayerVersion.from_layer_version_arn(self, "WebAdapter", layer_arn))
        # Streams only read: the prediction (and its model version's schema) from the table, and
        # output files, which this function serves to the platform-signed URLs
        # (`/v1/blobs/…`, cogplane.adapters.aws.signed) from the bucket.
        data.table.grant_read_data(self.function)
        data.bucket.grant_read(self.function)
        data.signing_secret.grant_read(self.function)  # opens stream URLs' tokens (cogplane.sealing)
        suppress(
            self.function,
            {
                "AwsSolutions-IAM5": "Read-only wildcards are scoped: the bucket's objects (presigned output URLs) "
                "and the table's indexes.",
            },
        )

        self.function_url = self.function.add_function_url(
            # Capability URLs (see the module docstring): the stream's own token is the secret; a
            # signed request (AWS_IAM) is something neither official client can send.
            auth_type=lambda_.FunctionUrlAuthType.NONE,
            invoke_mode=lambda_.InvokeMode.RESPONSE_STREAM,
        )
        # https://<url-id>.lambda-url.<region>.on.aws/ (trailing slash: COGPLANE_STREAM_URL strips it)
        self.url = self.function_url.url
