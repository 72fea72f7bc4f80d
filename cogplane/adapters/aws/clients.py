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
