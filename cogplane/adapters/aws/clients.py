"""The AWS clients the platform makes, from one botocore session per process.

botocore, not boto3: `boto3.client` is a botocore client made from boto3's default session, and
importing boto3 imports s3transfer (its managed-transfer methods, `upload_file` & co., which the
platform never calls) and boto3's resource layer: about 6% of the instructions of the API
function's first event (docs/performance.md, "Lambda init"). The clients are the same botocore
clients, with the same credential, region and configuration resolution; only their user agent no
longer says Boto3.
"""

from __future__ import annotations

import threading
from typing import Any

_session: Any = None
_lock = threading.Lock()


def session() -> Any:
    """The process's botocore session (credentials and region from the environment, as boto3's
    default session reads them), made on first use."""
    global _session
    with _lock:
        if _session is None:
            import botocore.session

            _session = botocore.session.get_session()
        return _session


def client(service: str, **kwargs: Any) -> Any:
    """A botocore client, as `boto3.client(service, **kwargs)` made it (`config=`, `region_name=`, ...)."""
    made = session()
    with _lock:  # a botocore session is not thread-safe (boto3's default session was shared the same way)
        return made.create_client(service, **kwargs)


class LazyClient:
    """A botocore client made on its first use (reading its service model is most of making one:
    S3's about 30 ms, ECS's 25): for the clients only some requests need, so a cold start that
    does not need them never makes them. Every attribute is the real client's."""

    def __init__(self, service: str, **kwargs: Any) -> None:
        self._service = service
        self._kwargs = kwargs
        self._client: Any = None
        self._made = threading.Lock()

    def made(self) -> bool:
        """Whether the client exists yet (tests, benchmarks)."""
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with self._made:
                if self._client is None:
                    self._client = client(self._service, **self._kwargs)
        return getattr(self._client, name)

    def __repr__(self) -> str:
        return f"LazyClient({self._service!r}, made={self.made()})"
