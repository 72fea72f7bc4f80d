"""Webhook delivery: triggered by the table's stream (new outbox items) and swept every minute
(retries that came due). Delivery logic lives in cogplane.services.webhooks."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from cogplane import resources as r
from infra import constants as c
from infra.constructs.data import Data
from infra.constructs.functions import python_function
from infra.constructs.nag import suppress


class Webhooks(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        data: Data,
        public_url: str,
        stream_url: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "WebhooksFunction",
            code=code,
            handler="functions.webhooks.handler.handler",
            environment={
                **data.environment(),
                "COGPLANE_PUBLIC_URL": public_url,
                # webhook bodies equal GET's, urls.stream included
                **({"COGPLANE_STREAM_URL": stream_url} if stream_url else {}),
                "COGPLANE_SIGNING_SECRET_ARN": data.signing_secret.secret_arn,
            },
            memory_mb=c.WORKER_MEMORY_MB,
            timeout=c.WEBHOOKS_TIMEOUT,
            description="cogplane webhooks: deliver due outbox events",
        )
        data.table.grant_read_write_data(self.function)  # outbox: read due, complete, reschedule
        data.signing_secret.grant_read(self.function)
        # Webhook bodies carry file outputs as URLs the platform signs (SigningKeys) and the stream
        # function serves (cogplane.adapters.aws.signed); the read grant covers the S3 fallback.
        data.bucket.grant_read(self.function)
        self.function.add_event_source(
            sources.DynamoEventSource(
                data.table,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=c.STREAM_BATCH_SIZE,
                max_batching_window=c.STREAM_MAX_BATCHING_WINDOW,
                retry_attempts=c.STREAM_RETRY_ATTEMPTS,
                bisect_batch_on_error=True,
                report_batch_item_failures=True,
                # Only new outbox items wake delivery; every other write is filtered out for free.
                filters=[
                    lambda_.FilterCriteria.filter(
                        {
                            "eventName": lambda_.FilterRule.is_equal("INSERT"),
                            "dynamodb": {"Keys": {r.SK: {"S": lambda_.FilterRule.is_equal("OUTBOX")}}},
                        }
                    )
                ],
            )
        )
        self.schedule = events.Rule(
            self,
            "Sweep",
            schedule=events.Schedule.rate(c.SCHEDULE_RATE),
            targets=[targets.LambdaFunction(self.function)],
        )
        suppress(
            self.function,
            {
                "AwsSolutions-IAM5": "Table grants include its indexes (the outbox GSI) and stream.",
            },
        )
