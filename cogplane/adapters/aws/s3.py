"""S3 blob store: one bucket (optionally under a key prefix); files served by presigned URLs.

Build the client with `Config(signature_version="s3v4")` and the bucket's region: botocore's
default S3 presigning is the legacy SigV2 query string, which newer regions reject.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from cogplane.domain.errors import NotFound
from cogplane.ports import BlobDigest, BlobInfo

_MISSING = {"404", "NoSuchKey", "NotFound"}
_S3_DEFAULT_TYPE = "binary/octet-stream"  # what S3 reports when no Content-Type was given
_DELETE_BATCH = 1000  # DeleteObjects limit
_MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 limit
_CHUNK = 1 << 20  # digest reads the object in pieces this big


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def content_disposition(filename: str) -> str:
    """`inline` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "file"
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class S3BlobStore:
    def __init__(self, client: Any, bucket: str, *, key_prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.key_prefix = key_prefix

    def _key(self, key: str) -> str:
        return f"{self.key_prefix}{key}"

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key), "Body": data}
        if content_type:
            kwargs["ContentType"] = content_type
        self.client.put_object(**kwargs)

    def _body(self, key: str) -> Any:
        """The object's streaming body (NotFound if absent); the caller closes it."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFound(f"Blob {key} not found.") from exc
            raise

    def get(self, key: str) -> bytes:
        with contextlib.closing(self._body(key)) as body:
            return body.read()

    def digest(self, key: str, *, max_bytes: int) -> BlobDigest:
        with contextlib.closing(self._body(key)) as body:
            return BlobDigest.of(body.iter_chunks(_CHUNK), max_bytes=max_bytes, key=key)

    def copy(self, source: str, dest: str, *, content_type: str | None = None) -> None:
        """CopyObject: objects up to 5 GiB (the platform's largest, a bundle, is 512 MiB)."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(dest),
            "CopySource": {"Bucket": self.bucket, "Key": self._key(source)},
            "MetadataDirective": "REPLACE",  # the upload's own metadata, if any, is not the blob's
        }
        if content_type:
            kwargs["ContentType"] = content_type
        try:
            self.client.copy_object(**kwargs)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFound(f"Blob {source} not found.") from exc
            raise

    def head(self, key: str) -> BlobInfo | None:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        content_type = resp.get("ContentType")
        if content_type == _S3_DEFAULT_TYPE:
            content_type = None
        return BlobInfo(key=key, size=int(resp.get("ContentLength", 0)), content_type=content_type)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))  # idempotent in S3

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys = [obj["Key"] for obj in page.get("Contents", [])]
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = keys[start : start + _DELETE_BATCH]
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
                errors = resp.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise RuntimeError(
                        f"S3 could not delete {len(errors)} blobs under {prefix!r}, "
                        f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )
                count += len(batch)
        return count

    def upload_url(self, key: str, *, max_bytes: int, expires_in: int = 3600) -> dict[str, Any]:
        """A presigned POST: S3 itself refuses a body over max_bytes (content-length-range), so
        uploads of any size (files 100 MiB, bundles 512 MiB) never pass API Gateway or Lambda."""
        post = self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=self._key(key),
            Conditions=[["content-length-range", 1, int(max_bytes)]],
            ExpiresIn=max(1, min(int(expires_in), _MAX_PRESIGN_S)),
        )
        return {"url": post["url"], "method": "POST", "fields": post["fields"]}

    def signed_url(self, key: str, *, expires_in: int = 3600, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=max(1, min(int(expires_in), _MAX_PRESIGN_S))
        )
