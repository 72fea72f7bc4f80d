"""Cold-boot phases an ECS task can see about itself (task metadata endpoint v4).

ECS sets `ECS_CONTAINER_METADATA_URI_V4` in every container; `GET $URI/task` answers the task's
`PullStartedAt` / `PullStoppedAt` (and each container's `CreatedAt` / `StartedAt`). With the
dispatcher's RunTask time (`--spawned-at`) that splits a cold boot into:

- capacity_time: RunTask → image pull start (placement; on a GPU capacity provider scaled to 0,
  the instance launch and ECS agent registration: usually the largest part);
- image_pull_time: the pull (0-ish when the instance has the image cached);
- then the runner's own boot and the model's setup (boot_time / setup_time, as before).
"""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime
from typing import Any

ENV = "ECS_CONTAINER_METADATA_URI_V4"
_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: str | None) -> float | None:
    """ECS's RFC 3339 times (nanoseconds, `Z` or an offset) as unix seconds."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip())
    text = text.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def task_metadata(base: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The task's metadata from ECS's endpoint (RunnerSettings.ecs_metadata_uri), None off ECS."""
    if not base:
        return None
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/task", timeout=timeout) as response:  # noqa: S310 - ECS's link-local URL
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def boot_phases(spawned_at: float | None, metadata: dict[str, Any] | None) -> dict[str, float]:
    """{capacity_time, image_pull_time} in seconds, for what ECS reports (empty off ECS)."""
    if not metadata:
        return {}
    phases: dict[str, float] = {}
    pull_start = parse_time(metadata.get("PullStartedAt"))
    pull_stop = parse_time(metadata.get("PullStoppedAt"))
    if spawned_at and pull_start and pull_start >= spawned_at:
        phases["capacity_time"] = round(pull_start - spawned_at, 4)
    if pull_start and pull_stop and pull_stop >= pull_start:
        phases["image_pull_time"] = round(pull_stop - pull_start, 4)
    return phases
