"""Secret inputs on the deployed adapters (DynamoDB, SQS, Secrets Manager under moto): the key
comes from the stack's SigningKeys secret; neither the table nor the queue holds the plain value."""

from __future__ import annotations

import json

import boto3

from cogplane.domain.entities import Account, Model, Version
from cogplane.sealing import REDACTED
from cogplane.settings import Settings
from cogplane.wiring import build_aws
from tests.conftest import SECRET_PLAIN, secret_schema
from tests.functions.conftest import REGION, TABLE

VERSION = "ab" * 32


def test_secret_inputs_are_sealed_with_the_signing_key_on_aws(aws):
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(Name="SigningKeys", SecretString="k" * 64)[
        "ARN"
    ]
    services = build_aws(Settings(signing_secret_arn=arn), clients=aws)
    account = Account(username="alice")
    services.state.create_account(account)
    model = Model(owner="alice", name="secret")
    services.state.create_model(model)
    version = Version(
        id=VERSION,
        owner="alice",
        name="secret",
        created_at="2026-01-01T00:00:00.000000Z",
        openapi_schema=secret_schema(),
    )
    services.state.put_version(version)

    p = services.predictions.create(account, model, version, {"input": {"prompt": "p", "api_key": SECRET_PLAIN}})
    assert p.input["api_key"] == REDACTED

    table = json.dumps(aws["dynamodb"].scan(TableName=TABLE)["Items"])
    assert REDACTED in table and SECRET_PLAIN not in table
    job = services.queue.claim(p.pool)
    assert job is not None and job.sealed and SECRET_PLAIN not in job.sealed
    # a runner (its own process, its own services over the same secret) opens it
    runner_side = build_aws(Settings(signing_secret_arn=arn), clients=aws)
    assert runner_side.secret_box().open(p.id, job.sealed) == {"api_key": SECRET_PLAIN}


def test_stream_urls_made_by_the_api_open_in_the_stream_function_on_aws(aws):
    """The API (or webhooks function) makes the token; the stream function, its own process with
    read access to the same SigningKeys secret, opens it. Output keys name no prediction id."""
    from cogplane.services.presenters import blob_prefix, present_prediction
    from functions.api.routers.streams import open_stream

    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(Name="SigningKeys", SecretString="s" * 64)[
        "ARN"
    ]
    api = build_aws(Settings(signing_secret_arn=arn), clients=aws)
    account = Account(username="alice")
    api.state.create_account(account)
    model = Model(owner="alice", name="plain")
    api.state.create_model(model)
    version = Version(
        id=VERSION,
        owner="alice",
        name="plain",
        created_at="2026-01-01T00:00:00.000000Z",
        openapi_schema=secret_schema(),
    )
    api.state.put_version(version)
    p = api.predictions.create(account, model, version, {"input": {"prompt": "p"}, "stream": True})
    url = present_prediction(api, p, "https://api.example")["urls"]["stream"]
    token = url.rsplit("/", 1)[-1]
    assert p.id not in url and p.id not in blob_prefix(p)

    stream_function = build_aws(Settings(signing_secret_arn=arn), clients=aws)
    assert open_stream(stream_function, token).id == p.id
