"""Blobs in a folder on disk, served by the API through signed, expiring URLs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from cogplane.clock import epoch
from cogplane.domain.errors import InvalidRequest, NotFound
from cogplane.ports import BlobDigest, BlobInfo

if TYPE_CHECKING:
    from cogplane.ports import Clock

BLOB_ROUTE = "/v1/blobs/"
_CHUNK = 1 << 20


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise InvalidRequest(f"Invalid blob key: {key!r}")
    return key


class DiskBlobStore:
    def __init__(self, root: str, base_url: str, secret: bytes, clock: Clock) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.clock = clock

    def _path(self, key: str) -> Path:
        return self.root / "data" / _check_key(key)

    def _meta(self, key: str) -> Path:
        return self.root / "meta" / (_check_key(key) + ".json")

    def path_of(self, key: str) -> Path:
        """The file behind a key (the API streams it)."""
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"Blob {key} not found.")
        return path

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        self._write(key, lambda fh: fh.write(data), content_type)

    def _write(self, key: str, fill: Any, content_type: str | None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic: readers see the old or the new file, never half of one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        meta = self._meta(key)
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"content_type": content_type}))

    def _open(self, key: str) -> Any:
        try:
            return open(self._path(key), "rb")  # noqa: SIM115 - the callers close it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"Blob {key} not found.") from None

    def digest(self, key: str, *, max_bytes: int) -> BlobDigest:
        with self._open(key) as fh:
            return BlobDigest.of(iter(lambda: fh.read(_CHUNK), b""), max_bytes=max_bytes, key=key)

    def copy(self, source: str, dest: str, *, content_type: str | None = None) -> None:
        with self._open(source) as src:
            self._write(dest, lambda fh: shutil.copyfileobj(src, fh, _CHUNK), content_type)

    def get(self, key: str) -> bytes:
        return self.path_of(key).read_bytes()

    def head(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        content_type = None
        meta = self._meta(key)
        if meta.is_file():
            content_type = json.loads(meta.read_text()).get("content_type")
        return BlobInfo(key=key, size=path.stat().st_size, content_type=content_type)

    def delete(self, key: str) -> None:
        for path in (self._path(key), self._meta(key)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def delete_prefix(self, prefix: str) -> int:
        base = self.root / "data"
        count = 0
        target = base / prefix
        if target.is_dir() and prefix.endswith("/"):
            count = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(self.root / "meta" / prefix, ignore_errors=True)
            return count
        parent = target.parent
        if not parent.is_dir():
            return 0
        for path in list(parent.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and rel.startswith(prefix):
                self.delete(rel)
                count += 1
        return count

    def delete_older_than(self, prefix: str, age_seconds: float) -> int:
        """What an S3 lifecycle expiration rule does deployed (the `uploads/` backstop of a day):
        delete every blob under `prefix` last written more than `age_seconds` ago, and the
        temporary files of puts that never finished. Returns how many were deleted."""
        base = self.root / "data"
        target = base / _check_key(prefix.rstrip("/"))
        if not target.is_dir():
            return 0
        cutoff = epoch(self.clock) - age_seconds
        count = 0
        for path in list(target.rglob("*")):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    self.delete(path.relative_to(base).as_posix())
                    count += 1
            except (FileNotFoundError, InvalidRequest):
                continue
        return count

    def _signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self.secret, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def signed_url(self, key: str, *, expires_in: int = 3600, filename: str | None = None) -> str:
        expires = int(epoch(self.clock)) + int(expires_in)
        query = {"expires": expires, "signature": self._signature(_check_key(key), expires)}
        return f"{self.base_url}{BLOB_ROUTE}{quote(key)}?{urlencode(query)}"

    def _upload_signature(self, key: str, expires: int, max_bytes: int) -> str:
        mac = hmac.new(self.secret, f"PUT\n{key}\n{expires}\n{max_bytes}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def upload_url(self, key: str, *, max_bytes: int, expires_in: int = 3600) -> dict[str, Any]:
        """A signed PUT of the API's (`PUT /v1/blobs/{key}`), as S3's presigned upload is deployed."""
        expires = int(epoch(self.clock)) + int(expires_in)
        signature = self._upload_signature(_check_key(key), expires, int(max_bytes))
        query = {"expires": expires, "max": int(max_bytes), "signature": signature}
        return {"url": f"{self.base_url}{BLOB_ROUTE}{quote(key)}?{urlencode(query)}", "method": "PUT", "fields": {}}

    def verify_upload(self, key: str, expires: int, max_bytes: int, signature: str) -> bool:
        if expires < epoch(self.clock):
            return False
        expected = self._upload_signature(key, expires, max_bytes).encode()
        return hmac.compare_digest(expected, signature.encode(errors="replace"))

    def verify(self, key: str, expires: int, signature: str) -> bool:
        """True if the signature is ours for this key and it has not expired."""
        if expires < epoch(self.clock):
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (a 500 for `%C3%9C`).
        return hmac.compare_digest(self._signature(key, expires).encode(), signature.encode(errors="replace"))
