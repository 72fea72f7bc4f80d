"""What moto server enforces once IAM is on (run by tests/sim/test_simaws.py in a process of its
own: enforcement is global to moto's process). Prints one JSON object: probe -> outcome."""

from __future__ import annotations

import json
import logging

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from simaws.iam import Iam, patch_presigned, widened

REGION, ACCOUNT = "us-east-1", "123456789012"


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    patch_presigned()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    config = Config(retries={"max_attempts": 1}, signature_version="s3v4")  # as the platform presigns

    def client(service, creds):
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            config=config,
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=creds.get("AWS_SESSION_TOKEN"),
        )

    boot = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    import tempfile
    from pathlib import Path

    iam = Iam({"iam": client("iam", boot), "sts": client("sts", boot)}, Path(tempfile.mkdtemp()))
    admin = iam.admin()
    ddb, s3, sqs, sm = (client(s, admin) for s in ("dynamodb", "s3", "sqs", "secretsmanager"))
    for table in ("table-a", "table-b"):
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName=table, Item={"pk": {"S": "x"}})
    for bucket in ("bucket-a", "bucket-b"):
        s3.create_bucket(Bucket=bucket)
        for key in ("p/x", "q/x"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    queue_a = sqs.create_queue(QueueName="queue-a")["QueueUrl"]
    queue_b = sqs.create_queue(QueueName="queue-b")["QueueUrl"]
    secret_a = sm.create_secret(Name="secret-a", SecretString="a")["ARN"]
    secret_b = sm.create_secret(Name="secret-b", SecretString="b")["ARN"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
                "Resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/table-a",
            },
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket-a/p/*"},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bucket-a/up/*"},
            {
                "Effect": "Allow",
                "Action": ["sqs:SendMessage", "sqs:CreateQueue"],
                "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:queue-a*",
            },
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_a},
        ],
    }
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    boot_iam = client("iam", admin)
    for name, document in (("as-written", policy), ("widened", widened(policy))):
        boot_iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        boot_iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(document))
    creds = {name: iam.credentials(f"arn:aws:iam::{ACCOUNT}:role/{name}", name) for name in ("as-written", "widened")}
    Iam.enforce(endpoint)

    results: dict[str, str] = {}
    key = {"pk": {"S": "x"}}

    def probe(name, call):
        try:
            call()
            results[name] = "allowed"
        except ClientError as exc:
            results[name] = "denied"
            if exc.response["Error"]["Code"] not in ("AccessDenied", "AccessDeniedException", "403"):
                results[name] = "error " + exc.response["Error"]["Code"]

    for role in ("as-written", "widened"):
        c = {s: client(s, creds[role]) for s in ("dynamodb", "s3", "sqs", "secretsmanager")}
        probe(
            f"{role} dynamodb GetItem granted table", lambda c=c: c["dynamodb"].get_item(TableName="table-a", Key=key)
        )
        probe(f"{role} dynamodb GetItem other table", lambda c=c: c["dynamodb"].get_item(TableName="table-b", Key=key))
        probe(
            f"{role} dynamodb DeleteItem (not granted)",
            lambda c=c: c["dynamodb"].delete_item(TableName="table-a", Key=key),
        )
        probe(
            f"{role} dynamodb TransactWriteItems of a granted Put",
            lambda c=c: c["dynamodb"].transact_write_items(
                TransactItems=[{"Put": {"TableName": "table-a", "Item": {"pk": {"S": "t"}}}}]
            ),
        )
        probe(f"{role} s3 GetObject granted prefix", lambda c=c: c["s3"].get_object(Bucket="bucket-a", Key="p/x"))
        probe(f"{role} s3 GetObject other prefix", lambda c=c: c["s3"].get_object(Bucket="bucket-a", Key="q/x"))
        probe(f"{role} s3 GetObject other bucket", lambda c=c: c["s3"].get_object(Bucket="bucket-b", Key="p/x"))
        # a HEAD is authorized as s3:GetObject (moto 5.2.6 alone asks for s3:HeadObject, which no policy has)
        probe(f"{role} s3 HeadObject granted prefix", lambda c=c: c["s3"].head_object(Bucket="bucket-a", Key="p/x"))
        probe(f"{role} s3 HeadObject other prefix", lambda c=c: c["s3"].head_object(Bucket="bucket-a", Key="q/x"))
        probe(
            f"{role} s3 PutObject (not granted)",
            lambda c=c: c["s3"].put_object(Bucket="bucket-a", Key="p/y", Body=b"y"),
        )
        probe(
            f"{role} sqs SendMessage granted queue",
            lambda c=c: c["sqs"].send_message(QueueUrl=queue_a, MessageBody="m"),
        )
        probe(
            f"{role} sqs SendMessage other queue", lambda c=c: c["sqs"].send_message(QueueUrl=queue_b, MessageBody="m")
        )
        probe(
            f"{role} sqs CreateQueue granted name", lambda c=c, r=role: c["sqs"].create_queue(QueueName=f"queue-a-{r}")
        )
        probe(
            f"{role} sqs GetQueueAttributes (not granted)", lambda c=c: c["sqs"].get_queue_attributes(QueueUrl=queue_a)
        )
        probe(
            f"{role} secretsmanager GetSecretValue granted",
            lambda c=c: c["secretsmanager"].get_secret_value(SecretId=secret_a),
        )
        probe(
            f"{role} secretsmanager GetSecretValue other",
            lambda c=c: c["secretsmanager"].get_secret_value(SecretId=secret_b),
        )
        for key_name in ("p/x", "q/x"):
            url = c["s3"].generate_presigned_url("get_object", Params={"Bucket": "bucket-a", "Key": key_name})
            results[f"{role} presigned GET {key_name}"] = str(httpx.get(url).status_code)
        post = c["s3"].generate_presigned_post("bucket-a", "p/posted")
        results[f"{role} presigned POST"] = str(
            httpx.post(post["url"], data=post["fields"], files={"file": b"y"}).status_code
        )
        # a form upload is s3:PutObject on the form's key (moto 5.2.6 alone: s3:PostObject on the bucket)
        post = c["s3"].generate_presigned_post("bucket-a", "up/posted")
        results[f"{role} presigned POST granted prefix"] = str(
            httpx.post(post["url"], data=post["fields"], files={"file": b"y"}).status_code
        )
    post = s3.generate_presigned_post("bucket-a", "p/posted")  # signed by the administrator
    results["admin presigned POST"] = str(
        httpx.post(post["url"], data=post["fields"], files={"file": b"y"}).status_code
    )
    probe("unknown key", lambda: client("dynamodb", boot).get_item(TableName="table-a", Key={"pk": {"S": "x"}}))
    wrong = {**admin, "AWS_SECRET_ACCESS_KEY": "wrong"}
    probe(
        "admin key, wrong secret",
        lambda: client("dynamodb", wrong).get_item(TableName="table-a", Key={"pk": {"S": "x"}}),
    )
    server.stop()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
