"""A VPC with public subnets only: no NAT gateway bill (~$33/month each, plus $0.045/GB).

Runners reach DynamoDB and S3 through free gateway endpoints; SQS, ECS, ECR and CloudWatch Logs
through their public endpoints (TLS) from public IPs. Security groups allow no inbound traffic at
all: runners only call out. Interface endpoints for those services would cost ~$7/month each per AZ,
so they are left out; add them with a NAT-less private subnet if your policy forbids public IPs.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.constructs.nag import suppress

MAX_AZS = 2


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=MAX_AZS,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=20),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
            restrict_default_security_group=True,
        )
        suppress(
            self.vpc,
            {
                "AwsSolutions-VPC7": "Flow logs are an opt-in cost; nothing listens inbound (security groups "
                "allow no ingress).",
            },
        )
        self.runner_security_group = ec2.SecurityGroup(
            self,
            "RunnerSg",
            vpc=self.vpc,
            description="cogplane runners: no inbound; outbound HTTPS to AWS APIs, registries, model hubs",
            allow_all_outbound=True,
        )
        self.public_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
