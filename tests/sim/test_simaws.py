"""The simulation's parts on their own (quick): the template interpreter, `python -m infra.app`'s
context, and API Gateway's rules in front of a real Lambda execution environment (Python 3.12)."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap

import httpx
import pytest

from infra.app import cli_context
from simaws.apigw import RestApi
from simaws.events import matches
from simaws.lambdas import FunctionConfig, LambdaFunction, python312, stage_runtime
from simaws.template import Assembly, Resolver

HANDLER = textwrap.dedent("""
    import base64, json, time

    def handler(event, context):
        path = event["path"]
        if path == "/sleep":
            time.sleep(float(event["queryStringParameters"]["s"]))
        if path == "/raise":
            raise ValueError("boom")
        if path == "/big":
            return {"statusCode": 200, "body": "x" * (6 * 1024 * 1024 + 10)}
        if path == "/bytes":
            return {"statusCode": 200, "headers": {"content-type": "image/png"},
                    "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps({"event": event, "remaining": context.get_remaining_time_in_millis()})}
""")


@pytest.fixture(scope="module")
def function(tmp_path_factory):
    root = tmp_path_factory.mktemp("fn")
    code = root / "code"
    code.mkdir()
    (code / "echo.py").write_text(HANDLER)
    fn = LambdaFunction(
        FunctionConfig(name="echo", logical_id="Echo", handler="echo.handler", code=code, timeout_s=20),
        python=python312(),
        runtime_dir=stage_runtime(root / "runtime"),
        log_dir=root,
        base_env={},
    )
    yield fn
    fn.close()


@pytest.fixture(scope="module")
def api(function):
    rest = RestApi(
        function, stage="api", binary_media_types=["*/*"], api_id="abc123", account="123456789012", timeout_s=3
    )
    transport = httpx.ASGITransport(app=rest)

    async def send(method: str, path: str, **kwargs) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as client:
            return await client.request(method, path, **kwargs)

    return lambda method, path, **kwargs: asyncio.run(send(method, path, **kwargs))


def test_the_stage_prefix_is_required(api):
    r = api("GET", "/v1/models")
    assert r.status_code == 403 and r.json() == {"message": "Missing Authentication Token"}


def test_a_rest_proxy_event_without_the_stage_in_its_path(api):
    r = api("POST", "/api/v1/things?a=1&a=2", content=b"\x00\xffraw", headers={"content-type": "image/png"})
    assert r.status_code == 200
    event = r.json()["event"]
    assert event["path"] == "/v1/things" and event["requestContext"]["path"] == "/api/v1/things"
    assert event["requestContext"]["stage"] == "api" and event["resource"] == "/{proxy+}"
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x00\xffraw"
    assert 0 < r.json()["remaining"] <= 20_000


def test_binary_responses_are_decoded(api):
    r = api("GET", "/api/bytes")
    assert r.status_code == 200 and r.content == bytes(range(256))


def test_limits_timeouts_and_errors(api):
    assert (api("POST", "/api/x", content=b"a" * (10 * 1024 * 1024 + 1))).status_code == 413
    # 5 MB fits API Gateway's 10 MB but not Lambda's 6 MB once base64-encoded (binary media types */*)
    too_big = api("POST", "/api/x", content=b"a" * (5 * 1024 * 1024), headers={"content-type": "text/plain"})
    assert too_big.status_code == 413 and too_big.json() == {"message": "Request Too Long"}
    slow = api("GET", "/api/sleep?s=5")
    assert slow.status_code == 504 and slow.json() == {"message": "Endpoint request timed out"}
    assert (api("GET", "/api/raise")).status_code == 502
    assert (api("GET", "/api/big")).status_code == 502


def test_filter_patterns():
    pattern = {"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": ["OUTBOX"]}}}}
    assert matches(pattern, {"eventName": "INSERT", "dynamodb": {"Keys": {"sk": {"S": "OUTBOX"}}}})
    assert not matches(pattern, {"eventName": "MODIFY", "dynamodb": {"Keys": {"sk": {"S": "OUTBOX"}}}})
    assert not matches(pattern, {"eventName": "INSERT", "dynamodb": {"Keys": {"sk": {"S": "PRED"}}}})


def test_intrinsic_functions(tmp_path):
    template = {
        "Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
        "Conditions": {"HasMail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Mail"}, ""]}]}},
        "Parameters": {"Mail": {"Type": "String", "Default": ""}},
    }
    (tmp_path / "s.template.json").write_text(json.dumps(template))
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "artifacts": {
                    "s": {
                        "type": "aws:cloudformation:stack",
                        "properties": {"templateFile": "s.template.json", "stackName": "st"},
                    }
                }
            }
        )
    )
    r = Resolver(Assembly.load(tmp_path))
    assert r.resolve({"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, {"Fn::Select": [1, ["a", "b"]]}]]}) == "st-b"
    assert (
        r.resolve({"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${Q}"})
        == "arn:aws:x:us-east-1:123456789012:st-Q"
    )
    assert r.resolve({"Fn::If": ["HasMail", "yes", {"Ref": "AWS::NoValue"}]}) is not None
    assert r.resolve({"a": {"Fn::If": ["HasMail", "yes", {"Ref": "AWS::NoValue"}]}}) == {}


def test_synth_context_from_cdk_json_and_flags(tmp_path):
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(json.dumps({"context": {"cogplane:maxPerPool": 4, "other": "x"}}))
    context = cli_context(["-c", "cogplane:maxPerPool=8", "--context=cogplane:alarmEmail=a@b.c"], cdk_json)
    assert context == {"cogplane:maxPerPool": "8", "other": "x", "cogplane:alarmEmail": "a@b.c"}
    with pytest.raises(SystemExit):
        cli_context(["-c", "novalue"], cdk_json)


def test_the_api_handler_sees_the_stage_as_its_root_path():
    from functions.api.handler import base_path

    assert base_path({"path": "/v1/models", "requestContext": {"path": "/api/v1/models"}}) == "/api"
    assert base_path({"path": "/", "requestContext": {"path": "/api/"}}) == "/api"
    assert base_path({"path": "/v1/x", "requestContext": {"path": "/cog/v1/x"}}) == "/cog"  # custom domain
    assert base_path({"path": "/v1/x", "requestContext": {"path": "/v1/x"}}) == ""  # custom domain, no base path
    assert base_path({"path": "/v1/x"}) == ""


def test_what_moto_enforces_with_iam_on_as_the_readme_says():
    """The measurement behind SIMAWS_IAM (README, `make sim-aws`): a role's policy as the template
    writes it and as simaws/iam.py widens it, each call tried with the role's STS credentials
    against moto server with enforcement on (in a process of its own: it is global to moto)."""
    import subprocess
    import sys

    from tests.system.conftest import REPO

    run = subprocess.run(
        [sys.executable, "-m", "tests.sim.iam_probe"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    expected = {
        # S3 and SQS: action and resource, as written
        "s3 GetObject granted prefix": "allowed",
        "s3 GetObject other prefix": "denied",
        "s3 GetObject other bucket": "denied",
        "s3 PutObject (not granted)": "denied",
        "sqs SendMessage granted queue": "allowed",
        "sqs SendMessage other queue": "denied",
        "sqs GetQueueAttributes (not granted)": "denied",
        # a presigned URL: authorized as its signer (simaws.iam.patch_presigned; moto alone: 500)
        "presigned GET p/x": "200",
        "presigned GET q/x": "403",
        "presigned POST": "403",  # PutObject is not granted: refused as its signer would be
        "presigned POST granted prefix": "204",  # ...and is on up/*: the form's key is checked
        # each request by its IAM action: a HEAD needs s3:GetObject
        "s3 HeadObject granted prefix": "allowed",
        "s3 HeadObject other prefix": "denied",
    }
    for role in ("as-written", "widened"):
        for probe, outcome in expected.items():
            assert got[f"{role} {probe}"] == outcome, (role, probe, got)
    # DynamoDB and Secrets Manager are checked against `*`: a statement naming the ARN denies all...
    for probe in (
        "dynamodb GetItem granted table",
        "secretsmanager GetSecretValue granted",
        "sqs CreateQueue granted name",
    ):
        assert got[f"as-written {probe}"] == "denied", got
    # ...so the simulation widens them: the action is enforced, the table or secret is not
    assert got["widened dynamodb GetItem granted table"] == got["widened dynamodb GetItem other table"] == "allowed"
    assert got["widened dynamodb DeleteItem (not granted)"] == "denied"
    assert got["widened dynamodb TransactWriteItems of a granted Put"] == "allowed"  # as AWS: by its parts
    assert got["widened secretsmanager GetSecretValue other"] == "allowed"
    assert got["widened sqs CreateQueue granted name"] == "allowed"
    assert got["admin presigned POST"] == "204"  # an upload its signer may make is stored
    assert got["unknown key"] == got["admin key, wrong secret"] == "denied"


def test_policies_are_widened_only_where_moto_cannot_check_the_resource():
    from simaws.iam import widened

    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject*", "sqs:SendMessage", "sqs:CreateQueue"], "Resource": "arn:q"},
            {"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:GetItem"], "Resource": ["arn:t"]},
        ],
    }
    out = widened(doc)["Statement"]
    assert {"Effect": "Allow", "Action": ["s3:GetObject*", "sqs:SendMessage"], "Resource": "arn:q"} in out
    assert {"Effect": "Allow", "Action": ["sqs:CreateQueue"], "Resource": "*"} in out
    dynamo = next(s for s in out if "dynamodb:PutItem" in s["Action"])
    assert dynamo["Resource"] == "*"
    assert "dynamodb:TransactWriteItems" in dynamo["Action"] and "dynamodb:TransactGetItems" in dynamo["Action"]
