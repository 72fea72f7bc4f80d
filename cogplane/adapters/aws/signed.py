"""S3 blobs behind download URLs the platform signs itself (HMAC with the SigningKeys secret).

A URL presigned by a Lambda function dies with the function's session token (an hour or less,
whatever the TTL said), and it only works if that function's role may `s3:GetObject` (the webhooks
function's once could not). So the deployed platform hands out its own URLs instead:
`{stream function URL}/v1/blobs/{key}?expires=…&signature=…`, the same shape as the local store's
(cogplane.adapters.local.disk). They live exactly as long as `expires` says, by the platform's
clock, and are served by the stream function (functions/stream/server.py), which checks the
signature and streams the object from S3 with its own credentials: a Function URL in
RESPONSE_STREAM mode has no 6 MB response limit, and a 200 with the bytes suits both official
clients (replicate-python's FileOutput does not follow redirects and sends its bearer token, which
S3 would refuse next to a presigned query).
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

from cogplane.clock import epoch
from cogplane.domain.errors import NotFound
from cogplane.ports import BlobDigest, BlobInfo, Clock

BLOB_ROUTE = "/v1/blobs/"
CHUNK = 1024 * 1024
_PURPOSE = b"cogplane blob urls v1"
# The stream function cannot be told its own Function URL (the URL depends on the function): its
# server puts each request's origin here (functions/stream/server.py), and URLs it signs use it.
REQUEST_BASE: contextvars.ContextVar[str] = contextvars.ContextVar("cogplane_request_base", default="")


def url_key(material: bytes) -> bytes:
    """The HMAC key of download URLs, derived from the install's key material (not the material
    itself, which also seals secret inputs)."""
    return hmac.new(material, _PURPOSE, hashlib.sha256).digest()


class SignedUrlBlobStore:
    """A BlobStore over S3BlobStore whose `signed_url` is the platform's own (see the module)."""

    def __init__(self, inner: Any, *, base_url: str, secret: Callable[[], bytes], clock: Clock) -> None:
        self.inner = inner
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._key: bytes | None = None
        self.clock = clock

    # --- BlobStore, delegated ------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        self.inner.put(key, data, content_type=content_type)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def head(self, key: str) -> BlobInfo | None:
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def upload_url(self, key: str, *, max_bytes: int, expires_in: int = 3600) -> dict[str, Any]:
        return self.inner.upload_url(key, max_bytes=max_bytes, expires_in=expires_in)

    def digest(self, key: str, *, max_bytes: int) -> BlobDigest:
        return self.inner.digest(key, max_bytes=max_bytes)

    def copy(self, source: str, dest: str, *, content_type: str | None = None) -> None:
        self.inner.copy(source, dest, content_type=content_type)

    # --- the platform's URLs ---------------------------------------------------------------------
    def _hmac_key(self) -> bytes:
        if self._key is None:  # one Secrets Manager read per execution environment, on first use
            self._key = url_key(self._secret())
        return self._key

    def _signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._hmac_key(), f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def signed_url(self, key: str, *, expires_in: int = 3600, filename: str | None = None) -> str:
        base = self.base_url or REQUEST_BASE.get().rstrip("/")
        if not base:  # nowhere to serve them from: S3's own (short-lived) presign
            return self.presign(key, expires_in=expires_in, filename=filename)
        expires = int(epoch(self.clock)) + int(expires_in)
        query = {"expires": expires, "signature": self._signature(key, expires)}
        return f"{base}{BLOB_ROUTE}{quote(key)}?{urlencode(query)}"

    def verify(self, key: str, expires: int, signature: str) -> bool:
        """True if the signature is ours for this key and it has not expired (by our clock)."""
        if expires < epoch(self.clock):
            return False
        return hmac.compare_digest(self._signature(key, expires).encode(), signature.encode(errors="replace"))

    def presign(self, key: str, *, expires_in: int = 300, filename: str | None = None) -> str:
        """A short S3 presigned GET (for a consumer that uses it at once)."""
        return self.inner.signed_url(key, expires_in=expires_in, filename=filename)

    def open(self, key: str) -> tuple[Iterator[bytes], BlobInfo]:
        """The object's bytes as chunks, and what it is (NotFound if absent)."""
        from botocore.exceptions import ClientError

        client, bucket = self.inner.client, self.inner.bucket
        try:
            resp = client.get_object(Bucket=bucket, Key=self.inner._key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in {"404", "NoSuchKey", "NotFound"}:
                raise NotFound(f"Blob {key} not found.") from exc
            raise
        content_type = resp.get("ContentType")
        if content_type == "binary/octet-stream":
            content_type = None
        info = BlobInfo(key=key, size=int(resp.get("ContentLength", 0)), content_type=content_type)
        body = resp["Body"]

        def chunks() -> Iterator[bytes]:
            with body:
                yield from body.iter_chunks(CHUNK)

        return chunks(), info
