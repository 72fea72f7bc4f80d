"""Shapes of the AWS resources, shared by the AWS adapters and the CDK stack (pure data, no boto3).

One DynamoDB table holds every entity and the outbox (single-table design). Items store the
entity as JSON in `data` plus the key/index attributes below; every list is a Query on the base
table or a GSI, never a Scan. `{t}` is a fixed-width timefmt timestamp, `{o} {n}` owner and name
joined by a space (it sorts below every name character, so ties order like (owner, name)).

    item        pk / sk                           gsi1pk / gsi1sk                     gsi2pk / gsi2sk
    account     ACCOUNT#{username} / ACCOUNT      ACCOUNTS / {username}
    token       TOKEN#{sha256} / TOKEN            TOKENS#{account} / {t}#{id}         TOKENID#{id} / TOKEN
    owner index OWNER_MODELS#{owner} / {name}      (written with each model: an owner's models)
    member      ORG#{org} / MEMBER#{username}     MEMBERSHIPS#{username} / {org}
    usage       USAGE#{account} / {day}#{hw}      (predict_time, predictions: atomic ADDs)
    rate bucket RATE#{key} / RATE                 (tokens, updated: conditional puts; TTL)
    model       MODEL#{o}/{n} / MODEL             PUBLIC_MODELS / {t}#{o} {n}   (1)
    version     MODEL#{o}/{n} / VERSION#{id}      VERSIONS#{o}/{n} / {t}#{id}         VERSION#{id} / {o}/{n}
    prediction  PREDICTION#{id} / PREDICTION      PREDICTIONS#{owner} / {t}#{id}
    deployment  DEPLOYMENTS#{owner} / DEPLOYMENT#{name}   (listed by a base-table Query)   (2)
    runner      RUNNER#{id} / RUNNER              RUNNERS / {pool}#{id}
    file        FILE#{id} / FILE                  FILES#{owner} / {t}#{id}
    outbox      OUTBOX#{id} / OUTBOX              OUTBOX#{kind} / {due_at}#{id}

(1) public models only; public models that have a version also carry
    gsi2 = PUBLIC_MODELS_BY_LATEST / {latest_version_created_at}#{o} {n} (sparse index).
(2) deployments with min_instances > 0 also carry gsi2 = WARM_DEPLOYMENTS / {o} {n} (sparse:
    the expirer's keep-warm pass reads just those).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

# --- DynamoDB -------------------------------------------------------------------------------

TABLE_LOGICAL_ID = "State"

PK = "pk"
SK = "sk"
GSI1 = "gsi1"
GSI1_PK = "gsi1pk"
GSI1_SK = "gsi1sk"
GSI2 = "gsi2"
GSI2_PK = "gsi2pk"
GSI2_SK = "gsi2sk"

DATA = "data"  # the entity as a JSON string
STATUS = "status"  # predictions: a plain attribute for ConditionExpressions
REV = "rev"  # predictions: a counter for optimistic concurrency of read-modify-write updates
RELEASE = "release_number"  # deployments: for expect_release conditions
DUE_AT = "due_at"  # outbox events
ATTEMPTS = "attempts"  # outbox events

# DynamoDB TTL (epoch seconds). Garbage collection only: AWS deletes up to ~48 h late, moto never.
TTL_ATTRIBUTE = "expires_at"

STREAM_VIEW_TYPE = "NEW_AND_OLD_IMAGES"
BILLING_MODE = "PAY_PER_REQUEST"

# DynamoDB's item size limit is 400 KB (names + values); keep a margin for the key attributes.
MAX_ITEM_BYTES = 400 * 1024
ITEM_SIZE_MARGIN = 2 * 1024

KEY_SCHEMA: list[dict[str, str]] = [
    {"AttributeName": PK, "KeyType": "HASH"},
    {"AttributeName": SK, "KeyType": "RANGE"},
]

ATTRIBUTE_DEFINITIONS: list[dict[str, str]] = [
    {"AttributeName": name, "AttributeType": "S"} for name in (PK, SK, GSI1_PK, GSI1_SK, GSI2_PK, GSI2_SK)
]

# Both GSIs project ALL: a list page is one Query, with no GetItem per row.
GLOBAL_SECONDARY_INDEXES: list[dict[str, Any]] = [
    {
        "IndexName": GSI1,
        "KeySchema": [
            {"AttributeName": GSI1_PK, "KeyType": "HASH"},
            {"AttributeName": GSI1_SK, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
    {
        "IndexName": GSI2,
        "KeySchema": [
            {"AttributeName": GSI2_PK, "KeyType": "HASH"},
            {"AttributeName": GSI2_SK, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
]

# What each GSI partition holds (documentation for infra and readers).
INDEX_PURPOSES: dict[str, list[str]] = {
    GSI1: [
        "PREDICTIONS#{owner}: an owner's predictions by created_at#id (newest first)",
        "TRAININGS#{owner}: an owner's trainings by created_at#id (newest first)",
        "VERSIONS#{owner}/{name}: a model's versions by created_at#id (newest first)",
        "PUBLIC_MODELS: public models by created_at#owner/name",
        "OUTBOX#{kind}: outbox events of a kind (webhook | timer) by due_at#id (oldest first)",
        "FILES#{owner}: an owner's files-API uploads by created_at#id (newest first)",
        "RUNNERS: live runner records by pool#id (one pool: begins_with pool#)",
        "ACCOUNTS: every account by username",
        "TOKENS#{account}: an account's API tokens by created_at#id",
        "MEMBERSHIPS#{username}: the orgs a user belongs to",
    ],
    GSI2: [
        "VERSION#{id}: every model version with this id (global lookup)",
        "PUBLIC_MODELS_BY_LATEST: public models with a version, by latest_version_created_at#owner/name",
        "WARM_DEPLOYMENTS: deployments with min_instances > 0, by owner name (sparse)",
        "TOKENID#{id}: a token by its public id (revocation)",
    ],
}


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for boto3 `dynamodb.create_table` (tests) matching the CDK table."""
    return {
        "TableName": table_name,
        "KeySchema": [dict(k) for k in KEY_SCHEMA],
        "AttributeDefinitions": [dict(a) for a in ATTRIBUTE_DEFINITIONS],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": g["IndexName"],
                "KeySchema": [dict(k) for k in g["KeySchema"]],
                "Projection": dict(g["Projection"]),
            }
            for g in GLOBAL_SECONDARY_INDEXES
        ],
        "BillingMode": BILLING_MODE,
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
    }


def time_to_live_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for boto3 `dynamodb.update_time_to_live`."""
    return {
        "TableName": table_name,
        "TimeToLiveSpecification": {"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    }


# --- S3: one bucket for inputs, outputs, uploads and version bundles ---------------------------

BUCKET_LOGICAL_ID = "Blobs"

FILES_PREFIX = "files/"  # /v1/files uploads: files/{owner}/{file_id}
UPLOADS_PREFIX = "uploads/"  # bytes sent straight to the store (/v1/uploads): uploads/{owner}/{id}
UPLOADS_LIFETIME_DAYS = 1  # an upload never taken is deleted after this (bucket rule deployed, local pumps on make up)
PREDICTIONS_PREFIX = "predictions/"  # inputs and outputs: predictions/{blob_dir}/... (random per prediction)
BUNDLES_PREFIX = "bundles/"  # source version bundles: bundles/{owner}/{name}/{version_id}.tar.gz


def prediction_prefix(prediction_id: str) -> str:
    """Every blob of one prediction lives under this prefix (removed together after 1 hour)."""
    return f"{PREDICTIONS_PREFIX}{prediction_id}/"


# --- SQS: one queue per pool, created on demand; one dead-letter queue ------------------------

QUEUE_NAME_MAX = 80
POOL_QUEUE_INFIX = "-pool-"  # queue prefix = {stack_name}-pool-; IAM grants {prefix}*
DLQ_SUFFIX = "-jobs-dlq"
DLQ_MAX_RECEIVE_COUNT = 5
POOL_QUEUE_VISIBILITY_TIMEOUT_S = 60
POOL_QUEUE_RETENTION_S = 4 * 24 * 3600
DLQ_RETENTION_S = 14 * 24 * 3600
MAX_VISIBILITY_TIMEOUT_S = 12 * 3600  # SQS limit

_QUEUE_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def pool_queue_prefix(stack_name: str) -> str:
    return f"{stack_name}{POOL_QUEUE_INFIX}"


def dlq_name(stack_name: str) -> str:
    return f"{stack_name}{DLQ_SUFFIX}"


def pool_queue_name(queue_prefix: str, pool: str) -> str:
    """The SQS queue name of a pool: letters, digits, `-` and `_`, at most 80 characters.
    Names that had to be changed (bad characters or too long) get a hash suffix so that two
    different pools never share a queue."""
    raw = f"{queue_prefix}{pool}"
    clean = _QUEUE_BAD_CHARS.sub("-", raw)
    if clean == raw and len(clean) <= QUEUE_NAME_MAX:
        return clean
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:12]
    return f"{clean[: QUEUE_NAME_MAX - len(digest) - 1]}-{digest}"


def pool_queue_attributes(dlq_arn: str | None = None) -> dict[str, str]:
    """Attributes of a pool queue (CreateQueue is idempotent only with identical attributes)."""
    attributes = {
        "VisibilityTimeout": str(POOL_QUEUE_VISIBILITY_TIMEOUT_S),
        "MessageRetentionPeriod": str(POOL_QUEUE_RETENTION_S),
    }
    if dlq_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(DLQ_MAX_RECEIVE_COUNT)}
        )
    return attributes
