"""The runner's settings: the platform's (cogplane.settings.Settings: state, queue, blobs, idle
timeout, environment cache, installer) plus what only a runner reads. `python -m gpu_runner` reads
them once and passes them down (RunnerConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cogplane.settings import Settings
from gpu_runner.ecs_metadata import ENV as ECS_METADATA_ENV
from gpu_runner.external_server import DEFAULT_COG_URL


class RunnerSettings(Settings):
    # image versions: the model container's cog server (the task's other container), COG_URL
    cog_url: str = Field(default=DEFAULT_COG_URL, validation_alias="COG_URL")
    # the port of the runner's webhook/upload server (0 = any); image tasks fix it (their cog was
    # once started with `--upload-url http://127.0.0.1:<port>/upload/`, still served for old tasks)
    runner_http_port: int = Field(default=0, ge=0, le=65535)
    # COGPLANE_COG_SYNC=0: always the async PUT and cog's webhooks, never a sync PUT (RunnerProcess.sync)
    cog_sync: bool = True
    # set by ECS in every container: the task metadata endpoint (cold-boot phases)
    ecs_metadata_uri: str = Field(default="", validation_alias=ECS_METADATA_ENV)
    # COGPLANE_LOG_FORMAT: plain text lines (`make up`), or one JSON object per line with the
    # prediction's id on each line about it (cogplane.logs; the stack's runner task definitions)
    log_format: Literal["text", "json"] = "text"
