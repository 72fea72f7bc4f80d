"""Creates the template's resources in moto (the part of `cdk deploy` that makes AWS resources)
and describes the rest (functions, API, schedules, stream mappings) for the emulators."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simaws.lambdas import FunctionConfig
from simaws.template import Assembly, Physical, Resolver, TemplateError, generated_secret

log = logging.getLogger("simaws.deploy")


def _short(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def camel(value: Any, *, literal_keys: frozenset[str] = frozenset({"Options", "DockerLabels"})) -> Any:
    """CloudFormation's PascalCase properties as the ECS API's camelCase (values kept)."""
    if isinstance(value, list):
        return [camel(v) for v in value]
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]): (v if k in literal_keys else camel(v)) for k, v in value.items()}
    return value


@dataclass
class Schedule:
    logical_id: str
    rate_s: float
    targets: list[str]  # function logical ids


@dataclass
class StreamMapping:
    logical_id: str
    function: str  # logical id
    table: str  # physical table name
    batch_size: int
    window_s: float
    filters: list[dict]
    starting_position: str


@dataclass
class Deployment:
    resolver: Resolver
    functions: dict[str, FunctionConfig] = field(default_factory=dict)  # logical id -> config
    rest_api: dict[str, Any] = field(default_factory=dict)  # id, stage, binary types, function
    function_urls: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    stream_mappings: list[StreamMapping] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    cluster_arn: str = ""
    task_definitions: dict[str, str] = field(default_factory=dict)  # logical id -> ARN


def _rate(expression: str) -> float:
    # rate(1 minute) / rate(5 minutes) / rate(1 hour)
    inner = expression.strip()[len("rate(") : -1].split()
    units = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
    return float(inner[0]) * units[inner[1]]


class Deployer:
    def __init__(
        self,
        assembly: Assembly,
        clients: dict[str, Any],
        *,
        secret_values: dict[str, str] | None = None,
        context_secrets_path: Path | None = None,
    ):
        self.assembly = assembly
        self.clients = clients
        self.resolver = Resolver(assembly)
        self.secret_values = dict(secret_values or {})  # logical id -> value to use
        self.region = self.resolver.region
        self.account = self.resolver.account

    # --- names -------------------------------------------------------------------------------------
    def name(self, logical_id: str, *, lower: bool = False, limit: int = 63) -> str:
        value = f"{self.assembly.stack_name}-{logical_id}"[:limit]
        return value.lower() if lower else value

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    # --- deploy ------------------------------------------------------------------------------------
    def deploy(self) -> Deployment:
        a = self.assembly
        r = self.resolver
        # Physical ids that need no AWS call, so every reference can resolve in any order.
        for lid, res in a.of_type("AWS::Lambda::Function").items():
            name = res["Properties"].get("FunctionName") or self.name(lid, limit=64)
            r.physical[lid] = Physical(ref=name, attrs={"Arn": self.arn("lambda", f"function:{name}")})
        for lid in a.of_type("AWS::ApiGateway::RestApi"):
            r.physical[lid] = Physical(ref=_short(lid), attrs={"RootResourceId": _short(lid + "/", 6)})
        for lid, res in a.of_type("AWS::ApiGateway::Stage").items():
            r.physical[lid] = Physical(ref=res["Properties"]["StageName"])
        for lid in a.of_type("AWS::Lambda::Url"):
            url_id = _short(lid, 32)
            r.physical[lid] = Physical(
                ref=url_id,
                attrs={"FunctionUrl": f"https://{url_id}.lambda-url.{self.region}.on.aws/", "FunctionArn": ""},
            )
        for lid, res in a.of_type("AWS::ECS::CapacityProvider").items():
            name = res["Properties"].get("Name") or self.name(lid)
            r.physical[lid] = Physical(ref=name)
        for lid, res in a.of_type("AWS::IAM::Role").items():
            name = res["Properties"].get("RoleName") or self.name(lid, limit=64)
            r.physical[lid] = Physical(
                ref=name,
                attrs={"Arn": f"arn:aws:iam::{self.account}:role/{name}", "RoleId": "AROA" + _short(lid, 16).upper()},
            )
        for lid in a.of_type("AWS::Logs::LogGroup"):
            name = f"/aws/{self.name(lid)}"
            r.physical[lid] = Physical(ref=name, attrs={"Arn": self.arn("logs", f"log-group:{name}:*")})

        self._network()
        for lid, res in a.of_type("AWS::DynamoDB::Table").items():
            self._table(lid, res["Properties"])
        for lid, res in a.of_type("AWS::S3::Bucket").items():
            self._bucket(lid, res["Properties"])
        for lid, res in a.of_type("AWS::SQS::Queue").items():
            self._queue(lid, res["Properties"])
        for lid, res in a.of_type("AWS::SecretsManager::Secret").items():
            self._secret(lid, res["Properties"])
        deployment = Deployment(resolver=r)
        for lid, res in a.of_type("AWS::ECS::Cluster").items():
            deployment.cluster_arn = self._cluster(lid, res.get("Properties", {}))
        for lid, res in a.of_type("AWS::ECS::TaskDefinition").items():
            deployment.task_definitions[lid] = self._task_definition(lid, res["Properties"])

        self._functions(deployment)
        self._api(deployment)
        for lid, res in a.of_type("AWS::Lambda::Url").items():
            target = self._function_of(res["Properties"]["TargetFunctionArn"])
            deployment.function_urls[lid] = {
                "function": target,
                "url": r.getatt(lid, "FunctionUrl"),
                "invoke_mode": res["Properties"].get("InvokeMode", "BUFFERED"),
                "auth": res["Properties"].get("AuthType"),
            }
        for lid, res in a.of_type("AWS::Events::Rule").items():
            props = res["Properties"]
            if props.get("State", "ENABLED") != "ENABLED" or "ScheduleExpression" not in props:
                continue
            targets = [self._function_of(t["Arn"]) for t in props.get("Targets", [])]
            deployment.schedules.append(Schedule(lid, _rate(props["ScheduleExpression"]), [t for t in targets if t]))
        for lid, res in a.of_type("AWS::Lambda::EventSourceMapping").items():
            props = res["Properties"]
            source = r.resolve(props["EventSourceArn"])
            table = next(
                (r.get(t).ref for t in a.of_type("AWS::DynamoDB::Table") if r.get(t).attrs.get("StreamArn") == source),
                None,
            )
            if table is None:
                raise TemplateError(f"{lid}: only DynamoDB stream sources are emulated")
            deployment.stream_mappings.append(
                StreamMapping(
                    logical_id=lid,
                    function=self._function_of(props["FunctionName"]),
                    table=table,
                    batch_size=int(props.get("BatchSize", 100)),
                    window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    filters=[json.loads(f["Pattern"]) for f in (props.get("FilterCriteria") or {}).get("Filters", [])],
                    starting_position=props.get("StartingPosition", "LATEST"),
                )
            )
        for name, output in a.template.get("Outputs", {}).items():
            if "Condition" in output and not r.condition(output["Condition"]):
                continue
            deployment.outputs[name] = r.resolve(output["Value"])
        return deployment

    def _function_of(self, value: Any) -> str | None:
        """The logical id of the function an ARN/name (or a reference to one) designates."""
        resolved = self.resolver.resolve(value)
        for lid in self.assembly.of_type("AWS::Lambda::Function"):
            p = self.resolver.get(lid)
            if resolved in (p.ref, p.attrs.get("Arn")):
                return lid
        return None

    # --- resource types ----------------------------------------------------------------------------
    def _network(self) -> None:
        ec2 = self.clients["ec2"]
        r = self.resolver
        vpcs = self.assembly.of_type("AWS::EC2::VPC")
        for lid, res in vpcs.items():
            vpc_id = ec2.create_vpc(CidrBlock=res["Properties"].get("CidrBlock", "10.0.0.0/16"))["Vpc"]["VpcId"]
            r.physical[lid] = Physical(ref=vpc_id, attrs={"VpcId": vpc_id, "DefaultSecurityGroup": ""})
        for lid, res in self.assembly.of_type("AWS::EC2::Subnet").items():
            props = r.resolve(res["Properties"])
            subnet = ec2.create_subnet(
                VpcId=props["VpcId"],
                CidrBlock=props["CidrBlock"],
                AvailabilityZone=props.get("AvailabilityZone", f"{self.region}a"),
            )["Subnet"]
            r.physical[lid] = Physical(ref=subnet["SubnetId"], attrs={"SubnetId": subnet["SubnetId"]})
        for lid, res in self.assembly.of_type("AWS::EC2::SecurityGroup").items():
            props = r.resolve(res["Properties"])
            group = ec2.create_security_group(
                GroupName=self.name(lid), VpcId=props.get("VpcId"), Description=props.get("GroupDescription", lid)
            )["GroupId"]
            r.physical[lid] = Physical(ref=group, attrs={"GroupId": group})

    def _table(self, lid: str, props: dict[str, Any]) -> None:
        ddb = self.clients["dynamodb"]
        p = self.resolver.resolve(props)
        name = p.get("TableName") or self.name(lid, limit=255)
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": p["KeySchema"],
            "AttributeDefinitions": p["AttributeDefinitions"],
            "BillingMode": p.get("BillingMode", "PROVISIONED"),
        }
        if p.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
        if p.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **p["StreamSpecification"]}
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = p.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        table = ddb.create_table(**kwargs)["TableDescription"]
        if p.get("TimeToLiveSpecification"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=p["TimeToLiveSpecification"])
        self.resolver.physical[lid] = Physical(
            ref=name, attrs={"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", "")}
        )

    def _bucket(self, lid: str, props: dict[str, Any]) -> None:
        s3 = self.clients["s3"]
        p = self.resolver.resolve(props)
        name = p.get("BucketName") or self.name(lid, lower=True)
        s3.create_bucket(Bucket=name)
        if p.get("LifecycleConfiguration"):  # accepted, never applied by moto (nor by this simulation)
            rules = []
            for rule in p["LifecycleConfiguration"]["Rules"]:
                out: dict[str, Any] = {
                    "ID": rule.get("Id", ""),
                    "Status": rule.get("Status", "Enabled"),
                    "Filter": {"Prefix": rule.get("Prefix", "")},
                }
                if "ExpirationInDays" in rule:
                    out["Expiration"] = {"Days": rule["ExpirationInDays"]}
                if "AbortIncompleteMultipartUpload" in rule:
                    out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
                rules.append(out)
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        self.resolver.physical[lid] = Physical(
            ref=name,
            attrs={
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
            },
        )

    def _queue(self, lid: str, props: dict[str, Any]) -> None:
        sqs = self.clients["sqs"]
        p = self.resolver.resolve(props)
        name = p.get("QueueName") or self.name(lid, limit=80)
        attributes = {
            k: str(p[k])
            for k in (
                "MessageRetentionPeriod",
                "VisibilityTimeout",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
                "MaximumMessageSize",
            )
            if k in p
        }
        if "RedrivePolicy" in p:
            attributes["RedrivePolicy"] = json.dumps(p["RedrivePolicy"])
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.resolver.physical[lid] = Physical(ref=url, attrs={"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _secret(self, lid: str, props: dict[str, Any]) -> None:
        sm = self.clients["secretsmanager"]
        p = self.resolver.resolve(props)
        name = p.get("Name") or self.name(lid, limit=512)
        value = self.secret_values.get(lid)
        if value is None:
            value = p.get("SecretString") or generated_secret(p.get("GenerateSecretString", {}))
            self.secret_values[lid] = value
        arn = sm.create_secret(Name=name, SecretString=value, Description=p.get("Description", ""))["ARN"]
        self.resolver.physical[lid] = Physical(ref=arn, attrs={"Id": arn})

    def _cluster(self, lid: str, props: dict[str, Any]) -> str:
        ecs = self.clients["ecs"]
        p = self.resolver.resolve(props)
        name = p.get("ClusterName") or self.name(lid, limit=255)
        arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
        self.resolver.physical[lid] = Physical(ref=name, attrs={"Arn": arn})
        return arn

    def _task_definition(self, lid: str, props: dict[str, Any]) -> str:
        ecs = self.clients["ecs"]
        p = camel(self.resolver.resolve(props))
        p.setdefault("family", self.name(lid))
        for container in p.get("containerDefinitions", []):
            # moto insists on a container-level memory setting (a hard `memory` for EC2); AWS takes
            # the task's (Fargate) or a soft memoryReservation alone (EC2)
            if not container.get("memory") and not p.get("memory"):
                container["memory"] = int(container.get("memoryReservation") or 512)
            if not container.get("memory") and not container.get("memoryReservation") and p.get("memory"):
                container["memoryReservation"] = int(p["memory"])
        td = ecs.register_task_definition(**p)["taskDefinition"]
        self.resolver.physical[lid] = Physical(
            ref=td["taskDefinitionArn"], attrs={"TaskDefinitionArn": td["taskDefinitionArn"]}
        )
        return td["taskDefinitionArn"]

    def _functions(self, deployment: Deployment) -> None:
        r = self.resolver
        concurrency_of = {}
        for lid, res in self.assembly.of_type("AWS::Lambda::Function").items():
            props = res["Properties"]
            if "ReservedConcurrentExecutions" in props:
                concurrency_of[lid] = int(props["ReservedConcurrentExecutions"])
        for lid, res in self.assembly.of_type("AWS::Lambda::Function").items():
            props = res["Properties"]
            if not str(props.get("Runtime", "")).startswith("python"):
                continue  # CDK's own custom-resource providers (node): deploy-time only
            code = props.get("Code", {})
            key = str(r.resolve(code.get("S3Key", "")))
            asset_hash = key.removesuffix(".zip")
            if asset_hash not in self.assembly.assets:
                raise TemplateError(f"{lid}: its code asset {key} is not in {self.assembly.outdir}")
            env = r.resolve((props.get("Environment") or {}).get("Variables", {}))
            deployment.functions[lid] = FunctionConfig(
                name=r.get(lid).ref,
                logical_id=lid,
                handler=props["Handler"],
                code=self.assembly.assets[asset_hash],
                environment={k: str(v) for k, v in env.items()},
                timeout_s=float(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                reserved_concurrency=concurrency_of.get(lid),
                arn=r.get(lid).attrs["Arn"],
            )

    def _api(self, deployment: Deployment) -> None:
        r = self.resolver
        apis = self.assembly.of_type("AWS::ApiGateway::RestApi")
        if not apis:
            return
        if len(apis) != 1:
            raise TemplateError("one REST API is emulated")
        ((api_lid, api),) = apis.items()
        stages = [res["Properties"] for res in self.assembly.of_type("AWS::ApiGateway::Stage").values()]
        function = None
        for res in self.assembly.of_type("AWS::ApiGateway::Method").values():
            integration = res["Properties"].get("Integration", {})
            if integration.get("Type") == "AWS_PROXY":
                uri = json.dumps(integration.get("Uri"))
                function = next((lid for lid in deployment.functions if f'"{lid}"' in uri), function)
        deployment.rest_api = {
            "logical_id": api_lid,
            "id": r.get(api_lid).ref,
            "stage": stages[0]["StageName"] if stages else "prod",
            "binary_media_types": api["Properties"].get("BinaryMediaTypes", []),
            "function": function,
            "url": f"https://{r.get(api_lid).ref}.execute-api.{self.region}.amazonaws.com",
        }
