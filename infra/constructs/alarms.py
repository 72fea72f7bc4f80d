"""Alarms, a dashboard and the SNS topic they notify (`-c cogplane:alarmEmail=you@example.com`
subscribes an address; confirm the e-mail AWS sends).

Alarms: jobs in the dead-letter queue, API 5xx and latency near the 29 s timeout, errors and
throttles of every function, the account's Lambda concurrency near its quota, the stream (webhook)
backlog by the mapping's iterator age, predictions stuck in `starting` (failed at the start
deadline, a metric the expirer publishes). Events straight to the topic: runner tasks that stopped
with an error (failed to start, capacity, spot) and GPU instances the Auto Scaling groups could
not launch (quota, capacity).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra import constants as c
from infra.constructs.nag import suppress

PERIOD = Duration.minutes(5)
API_LATENCY_P99_MS = 20_000  # API Gateway cuts at 29 s
API_5XX_PER_PERIOD = 5
STREAM_BACKLOG_MS = 60_000  # webhook wake-ups older than a minute
CONCURRENCY_SHARE = 0.8


class Alarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data,
        api,
        streams,
        webhooks,
        expirer,
        workers,
        email: str | None,
        account_concurrency: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Topic", display_name="cogplane alarms", enforce_ssl=True)
        suppress(
            self.topic,
            {
                "AwsSolutions-SNS2": "Alarm notifications carry no data; a KMS key would need a key policy for "
                "CloudWatch and EventBridge to publish.",
            },
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(
            name: str,
            metric: cloudwatch.IMetric,
            threshold: float,
            description: str,
            *,
            periods: int = 1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        ):
            made = cloudwatch.Alarm(
                self,
                name,
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=comparison,
                alarm_description=description,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            made.add_alarm_action(action)
            self.alarms.append(made)
            return made

        alarm(
            "DlqDepth",
            data.dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            1,
            "Jobs reached the dead-letter queue (a prediction was received too many times).",
        )
        alarm(
            "Api5xx",
            api.rest_api.metric_server_error(period=PERIOD, statistic="Sum"),
            API_5XX_PER_PERIOD,
            "The API answered 5xx (function errors, timeouts, throttles).",
        )
        alarm(
            "ApiLatency",
            api.rest_api.metric_latency(period=PERIOD, statistic="p99"),
            API_LATENCY_P99_MS,
            "API p99 latency is near API Gateway's 29 s integration timeout.",
            periods=3,
        )
        functions = {
            "Api": api.function,
            "Streams": streams.function,
            "Webhooks": webhooks.function,
            "Expirer": expirer.function,
        }
        for name, fn in functions.items():
            alarm(
                f"{name}Errors",
                fn.metric_errors(period=PERIOD, statistic="Sum"),
                1,
                f"The {name.lower()} function raised or timed out.",
            )
            alarm(
                f"{name}Throttles",
                fn.metric_throttles(period=PERIOD, statistic="Sum"),
                1,
                f"The {name.lower()} function was throttled (reserved or account concurrency).",
            )
        alarm(
            "AccountConcurrency",
            lambda_.Function.metric_all_concurrent_executions(period=PERIOD, statistic="Maximum"),
            int(account_concurrency * CONCURRENCY_SHARE),
            f"Lambda concurrency is above {int(CONCURRENCY_SHARE * 100)} % of the account's quota "
            f"({account_concurrency}; -c cogplane:accountConcurrency=N).",
        )
        alarm(
            "WebhookBacklog",
            cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name="IteratorAge",
                statistic="Maximum",
                period=PERIOD,
                dimensions_map={"FunctionName": webhooks.function.function_name},
            ),
            STREAM_BACKLOG_MS,
            "Webhook wake-ups from the table's stream are more than a minute behind.",
        )

        # predictions stuck in `starting`: the expirer fails them at their start deadline and
        # publishes how many (functions/expirer/handler.py, Embedded Metric Format)
        alarm(
            "PredictionsStuckStarting",
            cloudwatch.Metric(
                namespace=c.METRICS_NAMESPACE,
                metric_name="StartDeadlineFailures",
                statistic="Sum",
                period=PERIOD,
                dimensions_map={"service": "expirer"},
            ),
            1,
            "Predictions stayed `starting` past the start deadline (no runner: GPU capacity or quota, or a "
            "runner that never started); their error names ECS's reason.",
        )

        # runner tasks that stopped for another reason than their own exit or a StopTask
        self.task_failures = events.Rule(
            self,
            "RunnerTaskFailed",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={
                    "clusterArn": [workers.cluster.cluster_arn],
                    "lastStatus": ["STOPPED"],
                    "stopCode": [{"anything-but": ["EssentialContainerExited", "UserInitiated"]}],
                },
            ),
            targets=[targets.SnsTopic(self.topic)],
        )
        groups = [asg.auto_scaling_group_name for asg in workers.auto_scaling_groups.values()]
        if groups:
            self.launch_failures = events.Rule(
                self,
                "GpuLaunchFailed",
                event_pattern=events.EventPattern(
                    source=["aws.autoscaling"],
                    detail_type=["EC2 Instance Launch Unsuccessful"],
                    detail={"AutoScalingGroupName": groups},
                ),
                targets=[targets.SnsTopic(self.topic)],
            )

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=None)
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[
                    api.rest_api.metric_count(period=PERIOD),
                    api.rest_api.metric_client_error(period=PERIOD),
                    api.rest_api.metric_server_error(period=PERIOD),
                ],
            ),
            cloudwatch.GraphWidget(
                title="API latency (p50, p99)",
                left=[
                    api.rest_api.metric_latency(period=PERIOD, statistic="p50"),
                    api.rest_api.metric_latency(period=PERIOD, statistic="p99"),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors and throttles",
                left=[fn.metric_errors(period=PERIOD, label=f"{name} errors") for name, fn in functions.items()]
                + [fn.metric_throttles(period=PERIOD, label=f"{name} throttles") for name, fn in functions.items()],
            ),
            cloudwatch.GraphWidget(
                title="Concurrency, DLQ depth",
                left=[lambda_.Function.metric_all_concurrent_executions(period=PERIOD, statistic="Maximum")],
                right=[data.dlq.metric_approximate_number_of_messages_visible(period=PERIOD)],
            ),
        )
        self.dashboard = dashboard
