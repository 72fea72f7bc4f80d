"""State (DynamoDB), blobs (S3), the jobs' dead-letter queue and the secrets."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cogplane import resources as r
from infra import constants as c
from infra.constructs.nag import suppress

# Every action the SQS adapter uses on pool queues (queues are created on demand, per pool).
POOL_QUEUE_ACTIONS = [
    "sqs:CreateQueue",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
]


def _attribute(name: str) -> dynamodb.Attribute:
    types = {a["AttributeName"]: a["AttributeType"] for a in r.ATTRIBUTE_DEFINITIONS}
    return dynamodb.Attribute(
        name=name, type=dynamodb.AttributeType({"S": "STRING", "N": "NUMBER", "B": "BINARY"}[types[name]])
    )


class Data(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.stack_name = stack.stack_name
        self.queue_prefix = r.pool_queue_prefix(stack.stack_name)

        keys = {k["KeyType"]: k["AttributeName"] for k in r.KEY_SCHEMA}
        self.table = dynamodb.Table(
            self,
            r.TABLE_LOGICAL_ID,
            partition_key=_attribute(keys["HASH"]),
            sort_key=_attribute(keys["RANGE"]),
            billing_mode=dynamodb.BillingMode(r.BILLING_MODE),
            stream=dynamodb.StreamViewType(r.STREAM_VIEW_TYPE),
            time_to_live_attribute=r.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=RemovalPolicy.RETAIN,  # models and accounts outlive a stack teardown
        )
        for gsi in r.GLOBAL_SECONDARY_INDEXES:
            gkeys = {k["KeyType"]: k["AttributeName"] for k in gsi["KeySchema"]}
            self.table.add_global_secondary_index(
                index_name=gsi["IndexName"],
                partition_key=_attribute(gkeys["HASH"]),
                sort_key=_attribute(gkeys["RANGE"]),
                projection_type=dynamodb.ProjectionType(gsi["Projection"]["ProjectionType"]),
            )

        self.bucket = s3.Bucket(
            self,
            r.BUCKET_LOGICAL_ID,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                # Backstops only: the expirer removes API predictions' data 1 hour after creation.
                s3.LifecycleRule(
                    id="predictions-backstop",
                    prefix=r.PREDICTIONS_PREFIX,
                    expiration=Duration.days(c.PREDICTIONS_BACKSTOP_DAYS),
                ),
                s3.LifecycleRule(
                    id="files-backstop", prefix=r.FILES_PREFIX, expiration=Duration.days(c.FILES_BACKSTOP_DAYS)
                ),
                # /v1/uploads: taken (and deleted) when the file or version is made; abandoned ones go
                s3.LifecycleRule(
                    id="uploads-backstop", prefix=r.UPLOADS_PREFIX, expiration=Duration.days(r.UPLOADS_LIFETIME_DAYS)
                ),
                s3.LifecycleRule(
                    id="abort-multipart", abort_incomplete_multipart_upload_after=Duration.days(c.ABORT_MULTIPART_DAYS)
                ),
            ],
        )
        suppress(
            self.bucket,
            {
                "AwsSolutions-S1": "Objects are short-lived prediction data reached only through presigned URLs; "
                "access logging would double the writes. Enable CloudTrail S3 data events if needed.",
            },
        )
        # Web predictions (source=web) keep their data under predictions/ too, but only until
        # deleted by their owner: the 1-day backstop is documented as the deployed retention.

        self.dlq = sqs.Queue(
            self,
            "JobsDlq",
            queue_name=r.dlq_name(stack.stack_name),
            retention_period=Duration.seconds(r.DLQ_RETENTION_S),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        suppress(
            self.dlq,
            {
                "AwsSolutions-SQS3": "This queue IS the dead-letter queue: pool queues are created at runtime by the "
                "SQS adapter with a RedrivePolicy pointing here (cogplane.resources).",
            },
        )

        # HMAC keys the API signs short-lived URLs with (stream URLs, file links).
        self.signing_secret = secretsmanager.Secret(
            self,
            "SigningKeys",
            description="cogplane signing keys",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        # The first admin's API token; the expirer registers its hash on its first run.
        self.admin_token_secret = secretsmanager.Secret(
            self,
            "AdminToken",
            description="cogplane: the first admin account's API token",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=40, exclude_punctuation=True),
        )
        for secret in (self.signing_secret, self.admin_token_secret):
            suppress(
                secret,
                {
                    "AwsSolutions-SMG4": "Rotation would invalidate signed URLs/tokens in flight; rotate by "
                    "redeploying with a new secret value (documented in docs/deploy-aws.md).",
                },
            )

    def pool_queues_arn(self) -> str:
        stack = Stack.of(self)
        return stack.format_arn(service="sqs", resource=f"{self.queue_prefix}*")

    def grant_pool_queues(self, grantee: iam.IGrantable) -> None:
        """Everything the SQS adapter does on pool queues (created on demand) and the DLQ."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=POOL_QUEUE_ACTIONS,
            resource_arns=[self.pool_queues_arn(), self.dlq.queue_arn],
        )

    def environment(self) -> dict[str, str]:
        """What cogplane.settings reads (plus the DLQ the pool queues redrive to)."""
        return {
            "COGPLANE_BACKEND": "aws",
            "COGPLANE_TABLE_NAME": self.table.table_name,
            "COGPLANE_BUCKET": self.bucket.bucket_name,
            "COGPLANE_QUEUE_PREFIX": self.queue_prefix,
            "COGPLANE_DLQ_ARN": self.dlq.queue_arn,
        }
