"""Names, sizes and knobs of the deployed stack (one place; constructs import from here)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_logs as logs

from cogplane.domain import hardware

DEFAULT_STACK_NAME = "cogplane"

# --- context keys (cdk.json or `cdk deploy -c key=value`) ------------------------------------
CTX_HARDWARE = "cogplane:hardware"  # JSON object {sku: instance type}; replaces the default map
CTX_GPU_MAX_INSTANCES = "cogplane:gpuMaxInstances"  # per SKU Auto Scaling group max
CTX_GPU_WARM_POOL = "cogplane:gpuWarmPool"  # "true": stopped, pre-initialised instances per SKU
CTX_RUNNER_IMAGE = "cogplane:runnerImage"  # "asset" (build gpu_runner/Dockerfile) or an image URI
CTX_LAMBDA_ASSET = "cogplane:lambdaAsset"  # folder staged by scripts/package_lambda.sh
CTX_MAX_PER_POOL = "cogplane:maxPerPool"
CTX_ALARM_EMAIL = "cogplane:alarmEmail"  # subscribes this address to the alarm topic
# Reserved concurrency: a number, or "none" on accounts whose Lambda quota cannot spare any
# (Lambda keeps 100 unreserved: new accounts with a quota of 10 must deploy with "none").
CTX_API_CONCURRENCY = "cogplane:apiConcurrency"
CTX_STREAM_CONCURRENCY = "cogplane:streamConcurrency"
CTX_ACCOUNT_CONCURRENCY = "cogplane:accountConcurrency"  # the account's quota: alarm at 80 %
# The Lambda Web Adapter layer of the stream function: one layer version ARN (every region), or a
# JSON object {region: ARN} merged over LWA_LAYER_ARNS below.
CTX_LWA_LAYER = "cogplane:lwaLayerArn"

# --- hardware: SKU -> EC2 instance type (all one-GPU sizes; the GPU count below is per task) ----
# One list with the API's (cogplane/domain/hardware.py).
CPU_SKU = hardware.CPU
GPU_INSTANCE_TYPES: dict[str, str] = hardware.gpu_instance_types()
GPUS_PER_TASK = 1
GPU_MAX_INSTANCES = 2  # per SKU: a cost guard; raise it with -c cogplane:gpuMaxInstances=N
# Soft memory reservation for a GPU runner: fits every xlarge above after the ECS agent's share;
# the container may use more (no hard limit) since one task owns the instance's only GPU.
GPU_TASK_MEMORY_RESERVATION_MIB = 8192
GPU_TASK_CPU_UNITS = 2048
GPU_ROOT_VOLUME_GIB = 200  # CUDA images + model environments + weights cache
TARGET_CAPACITY_PERCENT = 100  # managed scaling: no spare instances (scale to zero when idle)

# GPU tasks keep model environments and weights on the instance's root volume (a host volume):
# COGPLANE_ENV_CACHE and HF_HOME point into it. Fargate has no host volumes: its tasks build in
# their ephemeral storage (README: EFS or a baked image for big models on `cpu`).
CACHE_VOLUME = "cogplane-cache"
CACHE_HOST_PATH = "/var/lib/cogplane/cache"
CACHE_CONTAINER_PATH = "/var/cogplane/cache"
CACHE_ENVIRONMENT = {
    "COGPLANE_ENV_CACHE": f"{CACHE_CONTAINER_PATH}/envs",
    "HF_HOME": f"{CACHE_CONTAINER_PATH}/huggingface",
}

# Fargate for the `cpu` SKU (no GPUs on Fargate).
CPU_TASK_CPU_UNITS = 2048
CPU_TASK_MEMORY_MIB = 8192
CPU_TASK_EPHEMERAL_GIB = 50  # model environments are built inside the task

METRICS_NAMESPACE = "cogplane"  # custom metrics (the expirer's, Embedded Metric Format)
MAX_PER_POOL = 4  # default cap on runner tasks per pool (the dispatcher's)
RUNNER_IDLE_TIMEOUT_S = 300  # runners exit after 5 idle minutes: scale to zero
RUNNER_CONTAINER = "runner"

# --- Lambda ----------------------------------------------------------------------------------
API_MEMORY_MB = 1024  # CPU scales with memory: 1 GB keeps cold start and JSON work quick
API_TIMEOUT = Duration.seconds(29)  # API Gateway REST's default integration timeout
# `Prefer: wait` is capped below the integration timeout: a prediction still running after 25 s
# is answered with its current state (`starting`/`processing`), which both clients then poll.
API_MAX_WAIT_SECONDS = 25
WORKER_MEMORY_MB = 512
API_CONCURRENCY = 100  # the API function's reserved concurrency (also its cap)
STREAM_CONCURRENCY = 50  # the public stream Function URL: open streams at once, at most
ACCOUNT_CONCURRENCY = 1000  # Lambda's default regional quota
WEBHOOKS_TIMEOUT = Duration.seconds(60)
EXPIRER_TIMEOUT = Duration.seconds(60)
SCHEDULE_RATE = Duration.minutes(1)  # expirer; webhooks also sweep due retries at this rate
STREAM_BATCH_SIZE = 100
STREAM_MAX_BATCHING_WINDOW = Duration.seconds(1)
STREAM_RETRY_ATTEMPTS = 3  # then the record is skipped; the scheduled sweep still delivers it
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

# The stream function: the API app's SSE routes under the AWS Lambda Web Adapter (LWA) layer,
# behind a Lambda Function URL in RESPONSE_STREAM mode (API Gateway REST buffers responses and cuts
# them at 29 s). One invocation per open stream, billed while it is open; nothing when idle.
STREAM_MEMORY_MB = 512
STREAM_TIMEOUT = Duration.minutes(15)  # Lambda's maximum: a stream still open then is cut
STREAM_HANDLER = "functions/stream/run.sh"  # executed by the layer's /opt/bootstrap
STREAM_PORT = 8080  # uvicorn on 127.0.0.1; LWA's default port
STREAM_READINESS_PATH = "/healthz"  # 200 without auth or a state-store call
# aws-lambda-web-adapter's public layer (x86_64: the staged wheels are manylinux x86_64).
# Version 30 = LWA v1.1.0 (the upstream README's "Zip Packages" ARN when this was written); the
# readiness check path and the env vars used here work the same on 0.8.x (layer 20+) and 1.x.
LWA_LAYER_ACCOUNT = "753240598075"
LWA_LAYER_NAME = "LambdaAdapterLayerX86"
LWA_LAYER_VERSION = 30
# Regions whose layer is published from another account or partition than the one above; every
# other region gets arn:aws:lambda:<region>:753240598075:layer:LambdaAdapterLayerX86:<version>.
LWA_LAYER_ARNS: dict[str, str] = {
    "cn-north-1": f"arn:aws-cn:lambda:cn-north-1:041581134020:layer:{LWA_LAYER_NAME}:{LWA_LAYER_VERSION}",
    "cn-northwest-1": f"arn:aws-cn:lambda:cn-northwest-1:069767869989:layer:{LWA_LAYER_NAME}:{LWA_LAYER_VERSION}",
}
API_STAGE = "api"  # clients' base URL: https://{id}.execute-api.{region}.amazonaws.com/api
API_THROTTLE_RATE = 100  # requests/s, steady (stage-wide); the burst below
API_THROTTLE_BURST = 200

# --- S3 --------------------------------------------------------------------------------------
PREDICTIONS_BACKSTOP_DAYS = 1  # lifecycle counts whole days; the expirer removes data at 1 h
FILES_BACKSTOP_DAYS = 2  # /v1/files uploads expire after 24 h (API contract); a day's margin
ABORT_MULTIPART_DAYS = 1

# Image versions (`cogplane push --image`): model images in ECR repositories named
# `cogplane/<owner>/<name>` (created with `aws ecr create-repository`); runner tasks may pull them.
MODEL_REPOSITORY_PREFIX = "cogplane/"
