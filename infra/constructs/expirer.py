"""The expirer, every minute: timeouts, lost runners, 1-hour data removal, min instances, and
registering the first admin token from Secrets Manager."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import constants as c
from infra.constructs.data import Data
from infra.constructs.functions import python_function
from infra.constructs.nag import suppress
from infra.constructs.workers import Workers


class Expirer(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, code: lambda_.Code, data: Data, workers: Workers
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "ExpirerFunction",
            code=code,
            handler="functions.expirer.handler.handler",
            environment={
                **data.environment(),
                **workers.dispatch_environment(),
                "COGPLANE_ADMIN_TOKEN_SECRET_ARN": data.admin_token_secret.secret_arn,
            },
            memory_mb=c.WORKER_MEMORY_MB,
            timeout=c.EXPIRER_TIMEOUT,
            description="cogplane expirer: timeouts, data removal, min instances",
        )
        data.table.grant_read_write_data(self.function)
        data.bucket.grant_read_write(self.function)  # removes predictions' data after 1 hour
        data.grant_pool_queues(self.function)
        data.admin_token_secret.grant_read(self.function)
        workers.grant_dispatch(self.function)
        self.schedule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.rate(c.SCHEDULE_RATE),
            targets=[targets.LambdaFunction(self.function)],
        )
        suppress(
            self.function,
            {
                "AwsSolutions-IAM5": "Wildcards are scoped: bucket objects, table indexes, the stack's pool queues, "
                "runner task-definition revisions, this cluster's tasks.",
            },
        )
