"""A source version's build log: how its Python environment was made, kept apart from the logs
of predictions (which hold what the model printed).

The runner that boots a version writes two blobs: `builds/<version id>/status.json` (status,
environment, times, error) and `builds/<version id>/log.txt` (the output of uv or pip, the
platform's warnings about cog.yaml). `GET /v1/models/{owner}/{name}/versions/{id}` shows them as its `build`
field (an extension to Replicate's shape; clients ignore unknown fields), and so does the web UI.

Statuses: `pending` (no runner has booted the version yet: environments are prepared on first
boot), `building`, `succeeded`, `failed`, and `not_needed` for image versions (built by `cog build`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from cogplane.domain.status import BuildStatus

if TYPE_CHECKING:
    from cogplane.domain.entities import Version
    from cogplane.ports import BlobStore

MAX_LOG_CHARS = 256 * 1024  # the log's tail is kept beyond this (a torch install is ~20 KB)


def _keys(version_id: str) -> tuple[str, str]:
    return f"builds/{version_id}/status.json", f"builds/{version_id}/log.txt"


def write(blobs: BlobStore, version_id: str, status: BuildStatus, logs: str, **info: Any) -> None:
    status_key, log_key = _keys(version_id)
    if len(logs) > MAX_LOG_CHARS:
        logs = "[... the start of the log was cut ...]\n" + logs[-MAX_LOG_CHARS:]
    blobs.put(log_key, logs.encode(), content_type="text/plain; charset=utf-8")
    record = {"status": status, **{k: v for k, v in info.items() if v is not None}}
    blobs.put(status_key, json.dumps(record).encode(), content_type="application/json")


def read(blobs: BlobStore, version: Version) -> dict[str, Any]:
    """The `build` field of a version."""
    if getattr(version, "kind", None) == "image":
        return {"status": BuildStatus.NOT_NEEDED, "logs": None}
    status_key, log_key = _keys(version.id)
    try:
        record = json.loads(blobs.get(status_key))
        logs = blobs.get(log_key).decode(errors="replace")
    except Exception:  # noqa: BLE001 - not booted yet (a missing blob), or being written
        return {"status": BuildStatus.PENDING, "logs": None}
    return {**record, "logs": logs}


class BuildLog:
    """Collects a version's build lines while its runner boots; writes them every few seconds
    (so a long build can be watched) and once at the end."""

    def __init__(self, blobs: BlobStore, version_id: str, *, interval: float = 3.0) -> None:
        self.blobs = blobs
        self.version_id = version_id
        self.lines: list[str] = []
        self.interval = interval
        self.last = 0.0
        self.building = False

    def __call__(self, line: str) -> None:
        self.lines.append(line.rstrip("\n"))
        if self.building and time.monotonic() - self.last > self.interval:
            self.save(BuildStatus.BUILDING)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")

    def save(self, status: BuildStatus, **info: Any) -> None:
        self.last = time.monotonic()
        try:
            write(self.blobs, self.version_id, status, self.text, **info)
        except Exception:  # noqa: BLE001 - a build log must never fail a boot
            import logging

            logging.getLogger("cogplane.builds").warning("could not store the build log", exc_info=True)
