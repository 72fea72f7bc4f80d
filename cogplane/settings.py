"""Settings, validated once at the edge (process start). Nothing under domain/ reads the env."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_api_workers(cpus: int | None) -> int:
    """`make up`'s API processes when COGPLANE_API_WORKERS is unset: one per 4 cores, 1 to 8 (on 2
    cores the API, the runners and the cog servers already share the CPU: a second process only
    adds a hop to every create's wake-up)."""
    return max(1, min(8, (cpus or 1) // 4))


class Settings(BaseSettings):
    """Every setting of the platform: `COGPLANE_<FIELD>` (a few standard names are read as they are:
    PORT, AWS_LWA_PORT). Processes read it once at their entry point and pass it down; nothing
    else in cogplane/, functions/ or gpu_runner/ reads os.environ (tests/unit/test_settings.py)."""

    model_config = SettingsConfigDict(env_prefix="COGPLANE_", extra="ignore", populate_by_name=True)

    backend: Literal["local", "aws"] = "local"
    home: Path = Path(".cogplane")
    # The absolute URL clients reach the API at; urls.* and next/previous are built from it.
    # Empty: taken from each request's Host.
    public_url: str = ""
    # Base URL of `urls.stream` links (SSE). Empty: the same as the API's. Deployed: the stream
    # function's Lambda Function URL (API Gateway buffers responses and cuts them at 29 s).
    stream_url: str = ""
    user: str = "local"
    token: str | None = None

    # AWS resource names have no defaults: the stack sets them.
    table_name: str | None = None
    bucket: str | None = None
    queue_prefix: str | None = None
    dlq_arn: str | None = None  # dead-letter queue of the pool queues (deployed)
    ecs_dispatch: str | None = None  # JSON EcsConfig written by the stack: where runners start
    # SQS long polling of runners' claims (deployed): an idle runner asks once per this many seconds
    queue_wait_seconds: int = Field(default=20, ge=0, le=20)

    # Key material for secret inputs (cogplane.sealing) and stream tokens. Local: empty, the
    # install's COGPLANE_HOME/secret is used. Deployed: the SigningKeys secret (its ARN), or a value.
    secrets_key: str = ""
    signing_secret_arn: str = ""

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # JSON request bodies
    max_wait_seconds: int = Field(default=60, ge=1, le=60)  # Prefer: wait cap (deployed: ~25)
    data_retention_seconds: int = Field(default=3600, ge=60)  # API predictions' data removal
    output_url_ttl_seconds: int = Field(default=3600, ge=60)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)  # files API uploads
    file_ttl_seconds: int = Field(default=24 * 3600, ge=60)  # files API uploads expire after 24 h
    page_size: int = Field(default=100, ge=1, le=1000)
    prediction_timeout_seconds: float = Field(default=1800, gt=0)  # a run longer than this fails
    # A prediction still `starting` this long after creation, with no live runner for its pool (no
    # capacity came, or its runner never started), fails with the reason ECS (or the local
    # dispatcher) gives. A live runner (booting, or busy with earlier work) postpones it.
    start_deadline_seconds: float = Field(default=900, gt=0)
    # Where image versions may come from: comma-separated prefixes (deployed: this account's ECR
    # repositories `ACCOUNT.dkr.ecr.REGION.amazonaws.com/cogplane/`, the only ones runners may pull).
    # Empty: any registry.
    image_repositories: str = ""
    # Per-account token buckets (Replicate's documented limits); a whole minute's worth may burst.
    rate_create_per_minute: int = Field(default=600, ge=1)  # prediction/training creates
    rate_other_per_minute: int = Field(default=3000, ge=1)  # every other authenticated request
    # Optional prices per hardware-second for the usage cost column: "cpu=0.0001,gpu-t4=0.000225".
    prices: str = ""

    # The single-machine stack serves HTTPS with a generated local CA (cogplane/tls.py); 0 = plain HTTP.
    tls: bool = True
    # Addresses server-side fetches (http(s) file inputs, webhooks) may reach although they are
    # private/loopback/link-local: comma-separated CIDRs, IPs or host names (cogplane/netguard.py).
    # Deployed: empty. `make up` defaults it to loopback.
    allow_networks: str = ""
    max_input_fetch_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)  # http(s) file inputs
    input_fetch_timeout_seconds: float = Field(default=60.0, gt=0)
    # `make up` on SIGTERM/SIGINT: how long in-flight predictions may run on before they are
    # failed (COGPLANE_STOP_GRACE, seconds); a second signal stops at once.
    stop_grace: float = Field(default=30.0, ge=0, le=3600)
    # What builds source versions' environments (cogplane/environments.py): uv where its
    # binary exists (auto), or always uv, or always pip.
    installer: Literal["auto", "uv", "pip"] = "auto"
    # Tests: a file holding seconds by which this process's clock runs ahead (cogplane.clock).
    clock_file: str = ""

    # --- the single machine (`make up`) ---------------------------------------------------------
    port: int | None = Field(default=None, ge=1, le=65535, validation_alias="PORT")  # 8000
    max_runners: int = Field(default=2, ge=1)  # runners per pool (versions; deployments: max_instances)
    # HTTP processes of the API (one listening socket, the kernel hands each connection to one):
    # one process serves about 300 predictions/s on one core; default one per 4 cores, 1 to 8.
    api_workers: int = Field(default_factory=lambda: default_api_workers(os.cpu_count()), ge=1, le=64)
    # An idle runner exits after this many seconds (scale to zero); `make up` passes it to its
    # runners, deployed runner tasks get it from their task definition.
    idle_timeout: float = Field(default=300.0, ge=0)
    examples: Path | None = None  # the folder `make up` pushes as examples/* (default: examples/)
    # A CA that clients (the CLI, runners fetching the platform's own URLs) trust besides the
    # system's; default $COGPLANE_HOME/tls/ca.pem when it exists (cogplane/tls.py).
    ca: str = ""
    env_cache: Path | None = None  # model environments (default $COGPLANE_HOME/envs)

    # --- deployed functions -----------------------------------------------------------------
    session_key: str = ""  # the web UI's cookie key material (default: the install's secret)
    admin_username: str = "admin"  # the first admin, whose token the stack keeps (expirer)
    admin_token_secret_arn: str = ""
    log_level: str = "warning"  # the stream function's uvicorn
    # the stream function's port under the Lambda Web Adapter (it sets AWS_LWA_PORT or PORT)
    lwa_port: int | None = Field(default=None, validation_alias="AWS_LWA_PORT")

    @field_validator("prices")
    @classmethod
    def _prices(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            sku, sep, price = part.partition("=")
            try:
                ok = bool(sep and sku.strip()) and float(price) >= 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"COGPLANE_PRICES: {part!r} is not SKU=PRICE_PER_SECOND")
        return v

    @field_validator("public_url", "stream_url")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.rstrip("/")

    @property
    def image_prefixes(self) -> list[str]:
        return [part.strip() for part in self.image_repositories.split(",") if part.strip()]

    @property
    def allowed_networks(self) -> list[str]:
        return [part.strip() for part in self.allow_networks.split(",") if part.strip()]

    @property
    def hardware_prices(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in self.prices.split(","))):
            sku, _, price = part.partition("=")
            out[sku.strip()] = float(price)
        return out

    @property
    def db_path(self) -> Path:
        return self.home / "cogplane.db"

    @property
    def ratelimit_db_path(self) -> Path:
        """The rate limiter's buckets (SqliteRateLimiter.own_file: no syncs, kept apart)."""
        return self.home / "ratelimits.db"

    @property
    def blob_root(self) -> Path:
        return self.home / "blobs"

    @property
    def secret_path(self) -> Path:
        return self.home / "secret"


class ClientSettings(Settings):
    """The `cogplane` CLI's settings: the platform's (home, token, tls, ca, installer, env_cache)
    plus where the API is and an admin token."""

    url: str = ""  # the API (default: `make up`'s, https://127.0.0.1:8000 with its local CA)
    admin_token: str | None = None  # `cogplane admin` (default: COGPLANE_TOKEN, then home/token)
