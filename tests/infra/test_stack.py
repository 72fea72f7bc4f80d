"""The deployed stack's contract, asserted on the synthesized template (not its YAML)."""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

from aws_cdk.assertions import Annotations, Match, Template

from cogplane import resources as r
from infra import constants as c
from tests.infra.conftest import synth

REPO = Path(__file__).resolve().parents[2]

# --- helpers ---------------------------------------------------------------------------------


def _function(template: Template, handler: str) -> tuple[str, dict]:
    found = template.find_resources("AWS::Lambda::Function", {"Properties": {"Handler": handler}})
    assert len(found) == 1, f"one function with handler {handler}"
    return next(iter(found.items()))


def _statements(template: Template, handler: str) -> list[dict]:
    """Every IAM statement attached to the role of the function with this handler."""
    _, fn = _function(template, handler)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    out = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _actions(statements: list[dict]) -> set[str]:
    actions: set[str] = set()
    for s in statements:
        value = s["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def _allows(actions: set[str], *wanted: str) -> bool:
    """Every wanted action is granted, literally or through a CDK grant wildcard (s3:GetObject*)."""
    return all(any(fnmatch.fnmatchcase(w, a) for a in actions) for w in wanted)


def _env(template: Template, handler: str) -> dict:
    return _function(template, handler)[1]["Properties"]["Environment"]["Variables"]


API = "functions.api.handler.handler"
WEBHOOKS = "functions.webhooks.handler.handler"
EXPIRER = "functions.expirer.handler.handler"
STREAM = c.STREAM_HANDLER


# --- data ------------------------------------------------------------------------------------


def test_table_matches_cogplane_resources_with_pitr_stream_and_ttl(template):
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": r.KEY_SCHEMA,
            "BillingMode": r.BILLING_MODE,
            "StreamSpecification": {"StreamViewType": r.STREAM_VIEW_TYPE},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": r.TTL_ATTRIBUTE, "Enabled": True},
            "GlobalSecondaryIndexes": [
                Match.object_like(
                    {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
                )
                for g in r.GLOBAL_SECONDARY_INDEXES
            ],
        },
    )
    template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


def test_bucket_is_private_encrypted_tls_only_with_lifecycle_backstops(template):
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like({"Prefix": r.PREDICTIONS_PREFIX, "ExpirationInDays": 1, "Status": "Enabled"}),
                        Match.object_like({"Prefix": r.FILES_PREFIX, "ExpirationInDays": c.FILES_BACKSTOP_DAYS}),
                        # make up's pumps expire uploads after the same lifetime (local/pumps.py)
                        Match.object_like({"Prefix": r.UPLOADS_PREFIX, "ExpirationInDays": r.UPLOADS_LIFETIME_DAYS}),
                    ]
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ),
                    ]
                )
            }
        },
    )


def test_dead_letter_queue_and_pool_queue_redrive_settings(template):
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": r.dlq_name(c.DEFAULT_STACK_NAME),
            "MessageRetentionPeriod": r.DLQ_RETENTION_S,
            "SqsManagedSseEnabled": True,
        },
    )
    # Pool queues are created at runtime with a RedrivePolicy to this DLQ: every edge gets its ARN.
    (dlq_id,) = template.find_resources("AWS::SQS::Queue").keys()
    for handler in (API, EXPIRER):
        env = _env(template, handler)
        assert env["COGPLANE_DLQ_ARN"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
        assert env["COGPLANE_QUEUE_PREFIX"] == r.pool_queue_prefix(c.DEFAULT_STACK_NAME)


def test_secrets_exist_for_signing_and_the_first_admin_token(template):
    template.resource_count_is("AWS::SecretsManager::Secret", 2)


# --- functions, schedules, grants ------------------------------------------------------------


def test_three_functions_share_one_code_asset_and_differ_by_handler(template):
    functions = template.find_resources("AWS::Lambda::Function", {"Properties": {"Runtime": "python3.12"}})
    handlers = {f["Properties"]["Handler"] for f in functions.values()}
    assert {API, WEBHOOKS, EXPIRER} <= handlers
    keys = {
        json.dumps(f["Properties"]["Code"]["S3Key"])
        for f in functions.values()
        if f["Properties"]["Handler"] in (API, WEBHOOKS, EXPIRER)
    }
    assert len(keys) == 1


def test_api_caps_prefer_wait_below_the_gateway_timeout(template):
    env = _env(template, API)
    assert env["COGPLANE_BACKEND"] == "aws"
    assert int(env["COGPLANE_MAX_WAIT_SECONDS"]) == c.API_MAX_WAIT_SECONDS < 29
    assert _function(template, API)[1]["Properties"]["Timeout"] == 29
    dispatch = env["COGPLANE_ECS_DISPATCH"]
    assert "Fn::Join" in dispatch  # JSON with the cluster, task definitions and capacity providers


def test_api_gateway_proxies_every_route_to_the_api_function(template):
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "{proxy+}"})
    methods = template.find_resources("AWS::ApiGateway::Method", {"Properties": {"HttpMethod": "ANY"}})
    assert len(methods) == 2  # / and /{proxy+}
    fn_id, _ = _function(template, API)
    for method in methods.values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert fn_id in json.dumps(integration["Uri"])
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"BinaryMediaTypes": ["*/*"], "EndpointConfiguration": {"Types": ["REGIONAL"]}}
    )
    template.has_resource_properties("AWS::ApiGateway::Stage", {"StageName": c.API_STAGE})


def test_expirer_and_webhooks_run_every_minute(template):
    for handler in (EXPIRER, WEBHOOKS):
        fn_id, _ = _function(template, handler)
        rules = template.find_resources("AWS::Events::Rule", {"Properties": {"ScheduleExpression": "rate(1 minute)"}})
        assert any(fn_id in json.dumps(rule["Properties"]["Targets"]) for rule in rules.values()), handler


def test_webhooks_are_woken_by_new_outbox_items_on_the_stream(template):
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "StartingPosition": "LATEST",
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "FilterCriteria": {"Filters": [{"Pattern": Match.string_like_regexp('.*"OUTBOX".*')}]},
        },
    )


def test_api_grants(template):
    statements = _statements(template, API)
    actions = _actions(statements)
    # TransactWriteItems is authorised per item action (Put/Update/ConditionCheckItem).
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"} <= actions
    assert _allows(actions, "s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket")
    assert {"sqs:SendMessage", "sqs:CreateQueue", "sqs:GetQueueAttributes"} <= actions
    assert {"ecs:RunTask", "ecs:ListTasks", "iam:PassRole", "secretsmanager:GetSecretValue"} <= actions
    run_task = next(s for s in statements if s["Action"] == "ecs:RunTask")
    assert "ecs:cluster" in json.dumps(run_task["Condition"])
    assert "task-definition/cogplane-runner-" in json.dumps(run_task["Resource"])
    queues = next(s for s in statements if "sqs:SendMessage" in s["Action"])
    assert f":{r.pool_queue_prefix(c.DEFAULT_STACK_NAME)}*" in json.dumps(queues["Resource"])


def test_webhooks_grants_are_the_table_the_signing_key_and_reading_the_bucket(template):
    statements = _statements(template, WEBHOOKS)
    actions = _actions(statements)
    assert {"dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:GetRecords"} <= actions
    # file links in webhook bodies are presigned by the webhooks function: it must be able to read them
    assert _allows(actions, "s3:GetObject")
    assert not any(a.startswith(("s3:Put", "s3:Delete", "sqs:", "ecs:", "iam:")) for a in actions)


def test_expirer_grants_and_admin_token_is_readable_only_by_the_expirer(template):
    actions = _actions(_statements(template, EXPIRER))
    assert _allows(
        actions, "dynamodb:Query", "s3:DeleteObject", "s3:ListBucket", "ecs:RunTask", "secretsmanager:GetSecretValue"
    )
    admin = next(k for k in template.find_resources("AWS::SecretsManager::Secret") if "AdminToken" in k)
    for handler, allowed in ((API, False), (WEBHOOKS, False), (EXPIRER, True)):
        readers = [s for s in _statements(template, handler) if admin in json.dumps(s["Resource"])]
        assert bool(readers) is allowed, handler


def test_log_groups_have_retention(template):
    groups = template.find_resources("AWS::Logs::LogGroup")
    assert len(groups) >= 5  # 3 functions, access logs, runners
    assert all(g["Properties"].get("RetentionInDays") == 30 for g in groups.values())


# --- the stream function (SSE through the Lambda Web Adapter) -----------------------------------


def test_stream_function_runs_the_app_under_the_web_adapter_with_a_long_timeout(template):
    _, fn = _function(template, STREAM)
    props = fn["Properties"]
    assert props["Runtime"] == "python3.12" and props["Architectures"] == ["x86_64"]
    assert props["Timeout"] == 900  # 15 min: Lambda's maximum
    env = props["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["PORT"] == "8080"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    assert env["COGPLANE_BACKEND"] == "aws" and "COGPLANE_TABLE_NAME" in env
    assert "COGPLANE_ECS_DISPATCH" not in env  # streams never start runners
    # the public LWA layer, in the stack's region (environment-agnostic here: a reference)
    (layer,) = props["Layers"]
    layer_json = json.dumps(layer)
    assert '{"Ref": "AWS::Region"}' in layer_json
    assert f":{c.LWA_LAYER_ACCOUNT}:layer:{c.LWA_LAYER_NAME}:{c.LWA_LAYER_VERSION}" in layer_json
    # the same code asset as the other functions
    _, api = _function(template, API)
    assert props["Code"]["S3Key"] == api["Properties"]["Code"]["S3Key"]


def test_stream_constants_match_the_entry_point():
    import os

    from functions.stream import server
    from infra.constructs.functions import REPO_ROOT

    handler = REPO_ROOT / c.STREAM_HANDLER
    assert handler.is_file() and os.access(handler, os.X_OK)  # /opt/bootstrap execs it
    assert c.STREAM_READINESS_PATH == server.HEALTH_PATH
    assert c.STREAM_PORT == server.DEFAULT_PORT


def test_stream_function_url_streams_responses_without_auth(template):
    fn_id, _ = _function(template, STREAM)
    template.has_resource_properties(
        "AWS::Lambda::Url",
        {
            "AuthType": "NONE",
            "InvokeMode": "RESPONSE_STREAM",
            "TargetFunctionArn": {"Fn::GetAtt": [fn_id, "Arn"]},
        },
    )
    template.resource_count_is("AWS::Lambda::Url", 1)
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunctionUrl",
            "FunctionUrlAuthType": "NONE",
            "Principal": "*",
            "FunctionName": {"Fn::GetAtt": [fn_id, "Arn"]},
        },
    )
    # Function URLs' dual authorization (Lambda, since October 2025; aws-cdk-lib >= 2.220.0 adds it)
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "InvokedViaFunctionUrl": True,
            "Principal": "*",
            "FunctionName": {"Fn::GetAtt": [fn_id, "Arn"]},
        },
    )
    assert "StreamUrl" in template.find_outputs("*")


def test_stream_function_may_only_read(template):
    actions = _actions(_statements(template, STREAM))
    assert _allows(actions, "dynamodb:GetItem", "dynamodb:Query", "s3:GetObject")
    writes = {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "s3:PutObject",
        "s3:DeleteObject",
        "ecs:RunTask",
        "iam:PassRole",
        "sqs:SendMessage",
    }
    assert not any(_allows(actions, w) for w in writes), actions
    assert not any(a.startswith(("sqs:", "ecs:", "iam:", "kms:")) for a in actions)
    # the signing key (stream URL tokens are opened with it), read-only, and no other secret
    secret_reads = [
        s
        for s in _statements(template, STREAM)
        if any(str(a).startswith("secretsmanager:") for a in _as_list(s["Action"]))
    ]
    assert secret_reads and all(
        set(_as_list(s["Action"])) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
        for s in secret_reads
    )
    assert all("SigningKeys" in json.dumps(s["Resource"]) for s in secret_reads)


def test_api_and_webhooks_point_urls_stream_at_the_function_url(template):
    (url_id,) = template.find_resources("AWS::Lambda::Url").keys()
    for handler in (API, WEBHOOKS):
        assert _env(template, handler)["COGPLANE_STREAM_URL"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}
    # and never the other way round (no cycle): the stream function knows nothing of the API
    assert "COGPLANE_STREAM_URL" not in _env(template, STREAM)
    assert "COGPLANE_PUBLIC_URL" not in _env(template, STREAM)


def test_web_adapter_layer_is_configurable_per_region(tmp_path_factory):
    from aws_cdk import App, Stack

    from infra.stack import lwa_layer_arn

    def arn(region: str | None, context: dict | None = None) -> str:
        app = App(context=context or {})
        env = {"env": {"account": "123456789012", "region": region}} if region else {}
        stack = Stack(app, "S", **env)
        return stack.resolve(lwa_layer_arn(stack))

    default = f":753240598075:layer:LambdaAdapterLayerX86:{c.LWA_LAYER_VERSION}"
    assert arn("eu-west-1").endswith(":lambda:eu-west-1" + default)
    assert arn("cn-north-1") == c.LWA_LAYER_ARNS["cn-north-1"]
    one = "arn:aws:lambda:us-east-1:111122223333:layer:MyAdapter:3"
    assert arn("us-east-1", {c.CTX_LWA_LAYER: one}) == one
    per_region = json.dumps({"eu-west-1": one})
    assert arn("eu-west-1", {c.CTX_LWA_LAYER: per_region}) == one
    assert arn("us-west-2", {c.CTX_LWA_LAYER: per_region}).endswith(":lambda:us-west-2" + default)
    # through the stack, by context
    stack = synth(tmp_path_factory, **{c.CTX_LWA_LAYER: one})
    _, fn = _function(Template.from_stack(stack), STREAM)
    assert fn["Properties"]["Layers"] == [one]


# --- ECS -------------------------------------------------------------------------------------


def test_one_gpu_capacity_provider_per_sku_scaling_from_zero(template):
    for sku, instance_type in c.GPU_INSTANCE_TYPES.items():
        template.has_resource_properties(
            "AWS::EC2::LaunchTemplate",
            {
                "LaunchTemplateData": Match.object_like(
                    {
                        "InstanceType": instance_type,
                        "MetadataOptions": {"HttpTokens": "required"},
                    }
                )
            },
        )
        template.has_resource_properties(
            "AWS::ECS::CapacityProvider",
            {
                "Name": f"{c.DEFAULT_STACK_NAME}-{sku}",
                "AutoScalingGroupProvider": Match.object_like(
                    {
                        "ManagedScaling": Match.object_like(
                            {"Status": "ENABLED", "TargetCapacity": c.TARGET_CAPACITY_PERCENT}
                        ),
                        "ManagedTerminationProtection": "ENABLED",
                    }
                ),
            },
        )
    groups = template.find_resources("AWS::AutoScaling::AutoScalingGroup")
    assert len(groups) == len(c.GPU_INSTANCE_TYPES)
    assert all(g["Properties"]["MinSize"] == "0" for g in groups.values())
    template.has_resource_properties(
        "AWS::ECS::ClusterCapacityProviderAssociations", {"CapacityProviders": Match.array_with(["FARGATE"])}
    )


def test_gpu_ami_is_the_ecs_gpu_optimised_one(template):
    params = template.to_json()["Parameters"]
    assert any("ecs/optimized-ami/amazon-linux-2023/gpu" in json.dumps(p) for p in params.values())


def test_runner_task_definitions_request_one_gpu_per_task(template):
    for sku in c.GPU_INSTANCE_TYPES:
        template.has_resource_properties(
            "AWS::ECS::TaskDefinition",
            {
                "Family": f"{c.DEFAULT_STACK_NAME}-runner-{sku}",
                "NetworkMode": "bridge",
                "RequiresCompatibilities": ["EC2"],
                "ContainerDefinitions": [
                    Match.object_like(
                        {
                            "Name": c.RUNNER_CONTAINER,
                            "ResourceRequirements": [{"Type": "GPU", "Value": str(c.GPUS_PER_TASK)}],
                            "Environment": Match.array_with([{"Name": "COGPLANE_BACKEND", "Value": "aws"}]),
                        }
                    )
                ],
            },
        )
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Family": f"{c.DEFAULT_STACK_NAME}-runner-cpu",
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
        },
    )


def test_runner_tasks_log_json_lines_with_the_prediction_id(template):
    """CloudWatch (awslogs) gets one JSON object per line from every runner task (cogplane.logs);
    image versions' task definitions are registered from these (cogplane.adapters.aws.ecs)."""
    families = [f"{c.DEFAULT_STACK_NAME}-runner-{sku}" for sku in (c.CPU_SKU, *c.GPU_INSTANCE_TYPES)]
    for family in families:
        template.has_resource_properties(
            "AWS::ECS::TaskDefinition",
            {
                "Family": family,
                "ContainerDefinitions": [
                    Match.object_like(
                        {
                            "Name": c.RUNNER_CONTAINER,
                            "Environment": Match.array_with([{"Name": "COGPLANE_LOG_FORMAT", "Value": "json"}]),
                            "LogConfiguration": Match.object_like({"LogDriver": "awslogs"}),
                        }
                    )
                ],
            },
        )


def test_gpu_tasks_keep_environments_and_weights_on_a_host_volume(template):
    """One build per instance: COGPLANE_ENV_CACHE and HF_HOME live on the instance's disk, mounted
    into every GPU runner task; Fargate (`cpu`) has no host volumes (README: EFS or a baked image)."""
    for sku in c.GPU_INSTANCE_TYPES:
        template.has_resource_properties(
            "AWS::ECS::TaskDefinition",
            {
                "Family": f"{c.DEFAULT_STACK_NAME}-runner-{sku}",
                "Volumes": [{"Name": c.CACHE_VOLUME, "Host": {"SourcePath": c.CACHE_HOST_PATH}}],
                "ContainerDefinitions": [
                    Match.object_like(
                        {
                            "MountPoints": [
                                {
                                    "SourceVolume": c.CACHE_VOLUME,
                                    "ContainerPath": c.CACHE_CONTAINER_PATH,
                                    "ReadOnly": False,
                                }
                            ],
                            "Environment": Match.array_with(
                                [
                                    {"Name": "COGPLANE_ENV_CACHE", "Value": "/var/cogplane/cache/envs"},
                                    {"Name": "HF_HOME", "Value": "/var/cogplane/cache/huggingface"},
                                ]
                            ),
                        }
                    )
                ],
            },
        )
    cpu = template.find_resources("AWS::ECS::TaskDefinition", {"Properties": {"Family": "cogplane-runner-cpu"}})
    (cpu,) = cpu.values()
    assert "Volumes" not in cpu["Properties"]


def test_containers_on_gpu_instances_cannot_reach_instance_metadata(template):
    """IMDSv2 with a hop limit of 1: the instance role's credentials stay with the host (ECS agent)."""
    templates = template.find_resources("AWS::EC2::LaunchTemplate")
    assert len(templates) == len(c.GPU_INSTANCE_TYPES)
    for lt in templates.values():
        options = lt["Properties"]["LaunchTemplateData"]["MetadataOptions"]
        assert options["HttpTokens"] == "required" and options["HttpPutResponseHopLimit"] == 1
    # the runner image's entrypoint blocks the credential endpoints for the `model` user: NET_ADMIN
    for sku in c.GPU_INSTANCE_TYPES:
        template.has_resource_properties(
            "AWS::ECS::TaskDefinition",
            {
                "Family": f"{c.DEFAULT_STACK_NAME}-runner-{sku}",
                "ContainerDefinitions": [
                    Match.object_like({"LinuxParameters": {"Capabilities": {"Add": ["NET_ADMIN"]}}})
                ],
            },
        )
    dockerfile = (REPO / "gpu_runner" / "Dockerfile").read_text()
    assert "useradd --system" in dockerfile and 'ENTRYPOINT ["/srv/cogplane/gpu_runner/entrypoint.sh"]' in dockerfile
    entrypoint = REPO / "gpu_runner" / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    assert "--uid-owner model -j REJECT" in entrypoint.read_text()


def test_network_has_no_nat_gateway_and_free_gateway_endpoints(template):
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    endpoints = template.find_resources("AWS::EC2::VPCEndpoint")
    assert len(endpoints) == 2
    assert all(e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway" for e in endpoints.values())
    template.resource_count_is("AWS::EC2::Subnet", 2)  # public only
    sg = template.find_resources(
        "AWS::EC2::SecurityGroup", {"Properties": {"GroupDescription": Match.string_like_regexp("cogplane runners.*")}}
    )
    assert all("SecurityGroupIngress" not in g["Properties"] for g in sg.values())


def test_api_and_stream_functions_have_reserved_concurrency(template):
    assert _function(template, API)[1]["Properties"]["ReservedConcurrentExecutions"] == c.API_CONCURRENCY
    assert _function(template, STREAM)[1]["Properties"]["ReservedConcurrentExecutions"] == c.STREAM_CONCURRENCY
    for handler in (WEBHOOKS, EXPIRER):
        assert "ReservedConcurrentExecutions" not in _function(template, handler)[1]["Properties"]


def test_alarms_notify_one_topic_and_a_dashboard_shows_them(template):
    topics = template.find_resources("AWS::SNS::Topic")
    assert len(topics) == 1
    (topic,) = topics
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    names = {a["Properties"].get("MetricName") for a in alarms.values()}
    assert {
        "ApproximateNumberOfMessagesVisible",
        "5XXError",
        "Latency",
        "Errors",
        "Throttles",
        "ConcurrentExecutions",
        "IteratorAge",
        "StartDeadlineFailures",
    } <= names
    assert sum(1 for a in alarms.values() if a["Properties"].get("MetricName") == "Errors") == 4
    (stuck,) = [
        a["Properties"] for a in alarms.values() if a["Properties"].get("MetricName") == "StartDeadlineFailures"
    ]
    # the metric the expirer publishes (functions/expirer/handler.py: Powertools Metrics, EMF)
    assert stuck["Namespace"] == "cogplane" and stuck["Dimensions"] == [{"Name": "service", "Value": "expirer"}]
    assert stuck["Threshold"] == 1
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic}] for a in alarms.values())
    rules = [
        r["Properties"]
        for r in template.find_resources("AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    sources = {tuple(r["EventPattern"]["source"]) for r in rules}
    assert {("aws.ecs",), ("aws.autoscaling",)} <= sources
    assert all(r["Targets"][0]["Arn"] == {"Ref": topic} for r in rules)
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    template.resource_count_is("AWS::SNS::Subscription", 0)  # no e-mail unless -c cogplane:alarmEmail=...
    assert "AlarmTopicArn" in template.find_outputs("*")


def test_outputs_give_the_api_url_and_the_admin_token_command(template):
    outputs = template.find_outputs("*")
    assert "ApiUrl" in outputs
    assert "aws secretsmanager get-secret-value" in json.dumps(outputs["AdminTokenCommand"]["Value"])


# --- checks and knobs ------------------------------------------------------------------------


def test_cdk_nag_finds_nothing_unsuppressed(stack):
    annotations = Annotations.from_stack(stack)
    errors = annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    warnings = annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert [e.entry.data for e in errors] == []
    assert [w.entry.data for w in warnings] == []


def test_hardware_map_warm_pool_alarm_email_concurrency_and_image_by_context(tmp_path_factory):
    stack = synth(
        tmp_path_factory,
        **{
            c.CTX_HARDWARE: json.dumps({"gpu-t4": "g4dn.2xlarge"}),
            c.CTX_GPU_WARM_POOL: "true",
            c.CTX_GPU_MAX_INSTANCES: "5",
            c.CTX_ALARM_EMAIL: "ops@example.com",
            c.CTX_API_CONCURRENCY: "none",
            c.CTX_STREAM_CONCURRENCY: "7",
            c.CTX_RUNNER_IMAGE: "asset",
        },
    )
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})
    assert "ReservedConcurrentExecutions" not in _function(template, API)[1]["Properties"]
    assert _function(template, STREAM)[1]["Properties"]["ReservedConcurrentExecutions"] == 7
    # the runner image is built for the instances' CPU, whatever the deployer's
    from aws_cdk import Stage

    outdir = Path(Stage.of(stack).outdir)
    images = [
        image
        for manifest in outdir.glob("*.assets.json")
        for image in json.loads(manifest.read_text()).get("dockerImages", {}).values()
    ]
    assert images and all(image["source"].get("platform") == "linux/amd64" for image in images), images
    template.resource_count_is("AWS::ECS::CapacityProvider", 1)
    template.has_resource_properties(
        "AWS::EC2::LaunchTemplate", {"LaunchTemplateData": Match.object_like({"InstanceType": "g4dn.2xlarge"})}
    )
    template.has_resource_properties("AWS::AutoScaling::AutoScalingGroup", {"MaxSize": "5"})
    template.resource_count_is("AWS::AutoScaling::WarmPool", 1)
