"""ECS runners: GPU capacity per hardware SKU (EC2 Auto Scaling groups on the ECS GPU-optimised AMI
behind capacity providers with managed scaling, from 0) and Fargate for `cpu`.

The dispatcher (cogplane.adapters.aws.ecs) starts one task per cold boot with RunTask; runners
exit when idle, managed scaling then drains the instance and the group returns to 0.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import constants as c
from infra.constructs.data import Data
from infra.constructs.nag import suppress
from infra.constructs.network import Network

# The ECS agent's image cache: a cold boot on a warm instance skips the multi-GB pull.
_ECS_AGENT_CONFIG = [
    "echo ECS_IMAGE_PULL_BEHAVIOR=prefer-cached >> /etc/ecs/ecs.config",
    "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config",
]


class Workers(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: Data,
        network: Network,
        image: ecs.ContainerImage,
        hardware: dict[str, str],
        gpu_max_instances: int,
        warm_pool: bool,
        max_per_pool: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.max_per_pool = max_per_pool
        self.network = network

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            enable_fargate_capacity_providers=True,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )

        self.log_group = logs.LogGroup(self, "RunnerLogs", retention=c.LOG_RETENTION)

        self.task_role = iam.Role(
            self,
            "RunnerTaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="cogplane runner: claims jobs, writes predictions and outputs",
        )
        data.table.grant_read_write_data(self.task_role)
        data.bucket.grant_read_write(self.task_role)
        data.grant_pool_queues(self.task_role)
        data.signing_secret.grant_read(self.task_role)  # opens predictions' sealed secret inputs

        self.execution_role = iam.Role(
            self, "RunnerExecutionRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com")
        )
        self.log_group.grant_write(self.execution_role)
        # image versions: model images live in this account's ECR repositories `cogplane/<owner>/<name>`
        self.execution_role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[
                    stack.format_arn(
                        service="ecr", resource="repository", resource_name=f"{c.MODEL_REPOSITORY_PREFIX}*"
                    )
                ],
            )
        )
        image_config = image  # bound once per task definition (adds ECR pull rights to the execution role)

        environment = {
            **data.environment(),
            "COGPLANE_HOME": "/var/cogplane",
            "COGPLANE_IDLE_TIMEOUT": str(c.RUNNER_IDLE_TIMEOUT_S),
            # one JSON object per line, each about a prediction with its prediction_id (cogplane.logs)
            "COGPLANE_LOG_FORMAT": "json",
            "COGPLANE_SIGNING_SECRET_ARN": data.signing_secret.secret_arn,
        }

        self.task_definitions: dict[str, ecs.TaskDefinition] = {}
        self.capacity_providers: dict[str, str] = {}

        # --- cpu: Fargate (awsvpc, public IP for image pulls and AWS APIs; no inbound) ------------
        cpu_td = ecs.FargateTaskDefinition(
            self,
            "RunnerCpu",
            family=f"{stack.stack_name}-runner-cpu",
            cpu=c.CPU_TASK_CPU_UNITS,
            memory_limit_mib=c.CPU_TASK_MEMORY_MIB,
            ephemeral_storage_gib=c.CPU_TASK_EPHEMERAL_GIB,
            task_role=self.task_role,
            execution_role=self.execution_role,
        )
        cpu_td.add_container(
            c.RUNNER_CONTAINER,
            image=image_config,
            environment=environment,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="cpu", log_group=self.log_group),
        )
        self.task_definitions[c.CPU_SKU] = cpu_td

        # --- GPU SKUs: one Auto Scaling group + capacity provider each ---------------------------
        self.instance_role = iam.Role(self, "GpuInstanceRole", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"))
        self.instance_role.add_managed_policy(
            iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEC2ContainerServiceforEC2Role")
        )
        self.auto_scaling_groups: dict[str, autoscaling.AutoScalingGroup] = {}
        for sku, instance_type in hardware.items():
            user_data = ec2.UserData.for_linux()
            user_data.add_commands(*_ECS_AGENT_CONFIG)
            if warm_pool:
                user_data.add_commands("echo ECS_WARM_POOLS_CHECK=true >> /etc/ecs/ecs.config")
            template = ec2.LaunchTemplate(
                self,
                f"Lt-{sku}",
                instance_type=ec2.InstanceType(instance_type),
                machine_image=ecs.EcsOptimizedImage.amazon_linux2023(ecs.AmiHardwareType.GPU),
                user_data=user_data,
                role=self.instance_role,
                security_group=network.runner_security_group,
                associate_public_ip_address=True,
                require_imdsv2=True,
                # containers (bridge networking: one hop more) cannot reach the instance's metadata
                # and its role credentials; the ECS agent on the host still can
                http_put_response_hop_limit=1,
                block_devices=[
                    ec2.BlockDevice(
                        device_name="/dev/xvda",
                        volume=ec2.BlockDeviceVolume.ebs(
                            c.GPU_ROOT_VOLUME_GIB, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                        ),
                    )
                ],
            )
            asg = autoscaling.AutoScalingGroup(
                self,
                f"Asg-{sku}",
                vpc=network.vpc,
                vpc_subnets=network.public_subnets,
                launch_template=template,
                min_capacity=0,
                max_capacity=gpu_max_instances,
            )
            if warm_pool:
                asg.add_warm_pool(min_size=0, pool_state=autoscaling.PoolState.STOPPED, reuse_on_scale_in=True)
            suppress(
                asg,
                {
                    "AwsSolutions-AS3": "Scaling is driven by the ECS capacity provider; notifications add nothing.",
                    "AwsSolutions-EC26": "Root volumes are encrypted (launch template block device).",
                    "AwsSolutions-EC28": "Detailed monitoring costs more than the short-lived GPU instances need.",
                    "AwsSolutions-EC29": "Instances are disposable ECS capacity, scaled to zero when idle.",
                },
            )
            provider = ecs.AsgCapacityProvider(
                self,
                f"Cp-{sku}",
                auto_scaling_group=asg,
                capacity_provider_name=f"{stack.stack_name}-{sku}",
                enable_managed_scaling=True,
                target_capacity_percent=c.TARGET_CAPACITY_PERCENT,
                enable_managed_termination_protection=True,  # never kill an instance with a runner on it
            )
            self.cluster.add_asg_capacity_provider(provider)
            self.auto_scaling_groups[sku] = asg
            self.capacity_providers[sku] = provider.capacity_provider_name

            td = ecs.Ec2TaskDefinition(
                self,
                f"Runner-{sku}",
                family=f"{stack.stack_name}-runner-{sku}",
                # bridge: the container has its own localhost (runner <-> cog server) and goes out
                # through the instance's public IP; awsvpc ENIs on EC2 get no public IP (no NAT here).
                network_mode=ecs.NetworkMode.BRIDGE,
                task_role=self.task_role,
                execution_role=self.execution_role,
            )
            # model environments and weights on the instance's disk, kept across tasks: a version's
            # second cold boot on an instance reuses its environment (one build per instance)
            td.add_volume(name=c.CACHE_VOLUME, host=ecs.Host(source_path=c.CACHE_HOST_PATH))
            runner = td.add_container(
                c.RUNNER_CONTAINER,
                image=image_config,
                environment={**environment, **c.CACHE_ENVIRONMENT},
                gpu_count=c.GPUS_PER_TASK,
                cpu=c.GPU_TASK_CPU_UNITS,
                memory_reservation_mib=c.GPU_TASK_MEMORY_RESERVATION_MIB,
                logging=ecs.LogDrivers.aws_logs(stream_prefix=sku, log_group=self.log_group),
                # the entrypoint's iptables rules keep model code off the credential endpoints
                linux_parameters=ecs.LinuxParameters(self, f"Linux-{sku}"),
            )
            runner.linux_parameters.add_capabilities(ecs.Capability.NET_ADMIN)
            runner.add_mount_points(
                ecs.MountPoint(source_volume=c.CACHE_VOLUME, container_path=c.CACHE_CONTAINER_PATH, read_only=False)
            )
            self.task_definitions[sku] = td

        for td in self.task_definitions.values():
            suppress(
                td,
                {
                    "AwsSolutions-ECS2": "Environment values are resource names, not secrets.",
                },
            )
        suppress(
            self.instance_role,
            {
                "AwsSolutions-IAM4": "The AWS-managed ECS container-instance policy is the documented minimum for "
                "the ECS agent.",
                "AwsSolutions-IAM5": "The ECS agent registers instances and submits state for this cluster "
                "(CDK's capacity-provider wiring; ecs:Submit* has no resource scoping).",
            },
        )
        suppress(
            self.task_role,
            {
                "AwsSolutions-IAM5": "Pool queues are created on demand, one per pool, under the stack's prefix "
                "({stack}-pool-*); bucket/table grants cover their objects and indexes.",
            },
        )
        suppress(
            self.execution_role,
            {
                "AwsSolutions-IAM5": "ecr:GetAuthorizationToken has no resource-level permissions.",
            },
        )

    # --- what the dispatcher needs ----------------------------------------------------------
    def dispatch_config(self) -> dict[str, object]:
        """The EcsDispatcher's settings (COGPLANE_ECS_DISPATCH, JSON)."""
        return {
            "cluster": self.cluster.cluster_arn,
            "task_definitions": {sku: td.task_definition_arn for sku, td in self.task_definitions.items()},
            "capacity_providers": dict(self.capacity_providers),
            "subnets": [s.subnet_id for s in self.network.vpc.public_subnets],
            "security_groups": [self.network.runner_security_group.security_group_id],
            "max_per_pool": self.max_per_pool,
        }

    def dispatch_environment(self) -> dict[str, str]:
        return {"COGPLANE_ECS_DISPATCH": Stack.of(self).to_json_string(self.dispatch_config())}

    def grant_dispatch(self, grantee: iam.IGrantable) -> None:
        """RunTask on the runner task definitions in this cluster; list/describe its tasks."""
        stack = Stack.of(self)
        cluster_condition = {"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}}
        families = [
            stack.format_arn(service="ecs", resource="task-definition", resource_name=f"{td.family}:*")
            for td in self.task_definitions.values()
        ]
        # image versions: `{family}-image-{digest12}` definitions registered on first dispatch
        image_families = [
            stack.format_arn(service="ecs", resource="task-definition", resource_name=f"{td.family}-image-*:*")
            for td in self.task_definitions.values()
        ]
        families += image_families
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["ecs:RunTask"], resources=families, conditions=cluster_condition)
        )
        tasks = stack.format_arn(service="ecs", resource="task", resource_name=f"{self.cluster.cluster_name}/*")
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["ecs:DescribeTasks", "ecs:StopTask"], resources=[tasks])
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:TagResource"],
                resources=[tasks],
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        # ListTasks is authorised on container instances; scope it to the cluster by condition.
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["ecs:ListTasks"], resources=["*"], conditions=cluster_condition)
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:TagResource"],
                resources=image_families,
                conditions={"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
            )
        )
        # Register/DescribeTaskDefinition have no resource-level permissions
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition"], resources=["*"])
        )
        self.task_role.grant_pass_role(grantee)
        self.execution_role.grant_pass_role(grantee)
