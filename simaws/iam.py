"""IAM in the simulation (on unless `SIMAWS_IAM=0`): each function and the runner task get credentials of
their own role, whose policies are the template's, and moto enforces them.

moto server checks a request's signature and its action against the caller's policies once
`/moto-api/reset-auth` sets the count of unchecked requests to 0. What moto 5.2.5 can check
(measured with role credentials from STS AssumeRole; README, `make sim-aws`):
- S3 and SQS: the action and the resource (bucket/key ARN, queue ARN);
- DynamoDB, DynamoDB Streams, Secrets Manager, ECS, STS: the action only: moto authorizes them
  against the resource `*`, so a statement scoped to an ARN would deny everything. Their
  statements are widened to `*` here (the action list is kept as the template has it);
- not at all: presigned S3 URLs (moto answers 500 without an Authorization header; the patch in
  `patch_presigned` checks the presigner's policies for the action and object instead, not the
  signature, which moto never verifies), managed policies (CloudWatch Logs, ECR: not emulated).

The simulation itself (the deployer, the ECS and stream emulators, the state saved on stop) acts
as an administrator user whose keys are written to $COGPLANE_HOME/sim/admin-credentials.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from simaws.template import Assembly, Resolver

log = logging.getLogger("simaws.iam")

# services whose requests moto authorizes against their resource's ARN (others: against `*`),
# except calls about a queue that does not exist yet (moto: `*`; AWS: the queue's ARN)
RESOURCE_CHECKED = ("s3:", "sqs:")
UNRESOLVED = ("sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:ListQueues", "sqs:*")


def resource_checked(action: str) -> bool:
    return action.startswith(RESOURCE_CHECKED) and action not in UNRESOLVED


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# AWS authorizes a transaction by its parts' actions (DynamoDB developer guide, "Using IAM with
# DynamoDB transactions"); moto asks for an action named after the API call instead.
TRANSACTIONS = {
    "dynamodb:TransactWriteItems": ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
    "dynamodb:TransactGetItems": ("dynamodb:GetItem",),
}


def widened(document: dict[str, Any]) -> dict[str, Any]:
    """The policy as moto can enforce it: statements about services whose resources moto does not
    resolve get `Resource: *` (the actions stay); S3 and SQS statements are kept as they are; a
    statement that allows the parts of a DynamoDB transaction allows the transaction call."""
    statements = []
    for statement in _as_list(document.get("Statement", [])):
        actions = _as_list(statement.get("Action", []))
        actions += [call for call, parts in TRANSACTIONS.items() if any(p in actions for p in parts)]
        checked = [a for a in actions if resource_checked(str(a))]
        others = [a for a in actions if not resource_checked(str(a))]
        if checked:
            statements.append({**statement, "Action": checked})
        if others:
            statements.append({**statement, "Action": others, "Resource": "*"})
    return {**document, "Statement": statements}


class Iam:
    def __init__(self, clients: dict[str, Any], home: Path):
        self.clients = clients  # boto3 clients: iam and sts (before enforcement: any key is accepted)
        self.path = home / "sim" / "admin-credentials.json"

    def admin(self) -> dict[str, str]:
        """The simulation's own administrator (every action on every resource)."""
        iam = self.clients["iam"]
        iam.create_user(UserName="simaws-admin")
        iam.put_user_policy(
            UserName="simaws-admin",
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName="simaws-admin")["AccessKey"]
        creds = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(creds))
        self.path.chmod(0o600)
        return creds

    def roles(self, assembly: Assembly, resolver: Resolver) -> dict[str, str]:
        """The template's roles and their inline policies (resolved, widened); logical id -> ARN."""
        iam = self.clients["iam"]
        arns = {}
        for lid, res in assembly.of_type("AWS::IAM::Role").items():
            props = resolver.resolve(res["Properties"])
            name = resolver.get(lid).ref
            arns[lid] = iam.create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
            )["Role"]["Arn"]
            for policy in props.get("Policies") or []:
                iam.put_role_policy(
                    RoleName=name,
                    PolicyName=policy["PolicyName"],
                    PolicyDocument=json.dumps(widened(policy["PolicyDocument"])),
                )
        for lid, res in assembly.of_type("AWS::IAM::Policy").items():
            props = resolver.resolve(res["Properties"])
            for role in props.get("Roles") or []:
                iam.put_role_policy(
                    RoleName=role,
                    PolicyName=props.get("PolicyName") or lid,
                    PolicyDocument=json.dumps(widened(props["PolicyDocument"])),
                )
        return arns

    def credentials(self, role_arn: str, session: str) -> dict[str, str]:
        """What the role's holder gets (Lambda's and ECS's role credentials), for 12 hours."""
        c = self.clients["sts"].assume_role(RoleArn=role_arn, RoleSessionName=session[:64], DurationSeconds=43200)
        c = c["Credentials"]
        return {
            "AWS_ACCESS_KEY_ID": c["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
            "AWS_SESSION_TOKEN": c["SessionToken"],
        }

    @staticmethod
    def enforce(endpoint: str) -> None:
        """From now on every request is checked (signature, then the policies)."""
        import httpx

        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()


def patch_presigned() -> None:
    """moto 5.2.5 answers a presigned S3 request (URL or POST) 500 once IAM is enforced (it reads the
    Authorization header a presigned URL does not have). Authorize it as the presigner instead:
    the key in X-Amz-Credential (and its X-Amz-Security-Token) must be allowed the action on the
    object. The signature and expiry stay unchecked (moto does not compute either). Every S3
    request is authorized by its IAM action, as S3 does (see `authorize`)."""
    from urllib.parse import parse_qs, urlparse

    from moto.core.authorization import ActionAuthenticatorMixin

    if getattr(ActionAuthenticatorMixin, "_simaws_presigned", False):
        return
    original = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action

    def authorize(self, bucket_name=None, key_name=None):
        # moto 5.2.6 names the action it authorizes by the request's API operation (HeadObject,
        # PostObject, ListObjectsV2...), which no policy grants; S3 authorizes by IAM action (a
        # HEAD of an object is s3:GetObject), which moto's S3 still sets as the request's `Action`
        # (its ACTION_MAP) and 5.2.5 used. Only while authorizing: its responses use the other.
        action = self.data.get("Action") if isinstance(getattr(self, "data", None), dict) else None
        if isinstance(action, str) and action:
            self._get_action = lambda: action
        try:
            return presigned(self, bucket_name, key_name)
        finally:
            self.__dict__.pop("_get_action", None)

    def presigned(self, bucket_name, key_name):
        headers = self.headers
        if "Authorization" not in headers:
            query = {k.lower(): v[0] for k, v in parse_qs(urlparse(self.uri).query).items()}
            # a presigned POST (browser-style upload) carries them as form fields, which moto
            # merges into its querystring
            form = {k.lower(): v[0] for k, v in (getattr(self, "querystring", None) or {}).items() if v}
            query.update({k: v for k, v in form.items() if k.startswith("x-amz-")})
            credential = query.get("x-amz-credential")  # SigV4; SigV2 names only the key
            if credential is None and query.get("awsaccesskeyid"):
                credential = f"{query['awsaccesskeyid']}/20000101/{self.region}/s3/aws4_request"
            if credential:
                extra = {"Authorization": f"AWS4-HMAC-SHA256 Credential={credential}, Signature=presigned"}
                if query.get("x-amz-security-token"):
                    extra["X-Amz-Security-Token"] = query["x-amz-security-token"]
                self.headers = {**dict(headers.items()), **extra}
                self._simaws_presigned_request = True
                if self.method == "POST" and key_name is None and isinstance(form.get("key"), str):
                    key_name = form["key"]  # a form upload: S3 checks s3:PutObject on the form's key
                try:
                    return original(self, bucket_name=bucket_name, key_name=key_name)
                finally:
                    self.headers = headers
        return original(self, bucket_name=bucket_name, key_name=key_name)

    from moto.iam.access_control import S3IAMRequest

    check_signature = S3IAMRequest.check_signature

    def check(self):
        if self._headers.get("Authorization", "").endswith("Signature=presigned"):
            return  # a presigned URL: moto cannot verify its signature (nor does it without IAM)
        return check_signature(self)

    S3IAMRequest.check_signature = check
    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = authorize
    ActionAuthenticatorMixin._simaws_presigned = True
