"""The files API: uploads that expire after 24 h and can be used as model inputs by their owner."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

from cogplane.domain import strictjson
from cogplane.domain.entities import Account, File, OutboxEvent, Page
from cogplane.domain.errors import InvalidRequest, NotFound, PayloadTooLarge, Unprocessable
from cogplane.domain.ids import new_prediction_id
from cogplane.domain.lifecycle import TIMER
from cogplane.domain.timefmt import add_seconds
from cogplane.ports import BlobDigest, BlobStore, Clock, Outbox, StateStore
from cogplane.services.accounts import AccountService

MAX_FILENAME_BYTES = 240  # under the 255 of common file systems, with room for the disk store's `.json` sidecar
MIME_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(?:\s*;[\x20-\x7e]*)?$")
FILE_URL = re.compile(r"^https?://[^/]+(?:/[^/]+)*?/v1/files/([a-z0-9]{10,40})/?$")
NOT_FOUND = "The requested file could not be found."


def safe_filename(filename: str | None) -> str:
    """An upload's name as stored and served: NFC, no control characters or path separators, not
    `.`/`..`, at most 240 bytes of UTF-8 (the extension kept); `file` when nothing is left."""
    name = unicodedata.normalize("NFC", filename or "")
    name = name.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
    name = "".join("_" if ch in "/\\" else ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf"))
    name = name.strip().strip(".") if set(name.strip()) <= {"."} else name.strip()
    if len(name.encode()) > MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem or len(ext.encode()) > 16:
            stem, dot, ext = name, "", ""
        room = MAX_FILENAME_BYTES - len((dot + ext).encode())
        name = stem.encode()[:room].decode("utf-8", "ignore") + dot + ext
    return name or "file"


def check_content_type(value: str | None) -> str:
    """A MIME type fit for a Content-Type header, or 400."""
    if not value:
        return "application/octet-stream"
    if len(value) > 255 or not MIME_TYPE.match(value):
        raise InvalidRequest("`type` must be a MIME type such as image/png.", field="type")
    return value


def file_id_from_url(value: Any) -> str | None:
    """The id in a `.../v1/files/{id}` URL (what both clients put into inputs), else None."""
    if not isinstance(value, str):
        return None
    match = FILE_URL.match(value)
    return match.group(1) if match else None


def copy_and_digest(
    blobs: BlobStore, source: str, dest: str, *, max_bytes: int, what: str, content_type: str | None
) -> BlobDigest:
    """Copy an upload where only the platform writes and digest that copy (what is hashed is what
    is kept, whatever its uploader sends to its URL meanwhile); the copy is removed again if it is
    over max_bytes (PayloadTooLarge naming `what`) or anything else fails."""
    blobs.copy(source, dest, content_type=content_type)
    try:
        return blobs.digest(dest, max_bytes=max_bytes)
    except PayloadTooLarge:
        blobs.delete(dest)
        raise PayloadTooLarge.over(what, max_bytes) from None
    except BaseException:
        blobs.delete(dest)
        raise


class FileService:
    def __init__(
        self,
        state: StateStore,
        blobs: BlobStore,
        clock: Clock,
        *,
        max_bytes: int,
        ttl_seconds: int,
        outbox: Outbox | None = None,
        access: AccountService | None = None,
    ) -> None:
        self.access = access or AccountService(state, clock)
        self.outbox = outbox  # schedules each upload's removal when it expires
        self.state = state
        self.blobs = blobs
        self.clock = clock
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds

    def create(
        self, viewer: Account, content: bytes, *, filename: str | None, content_type: str | None, metadata: Any = None
    ) -> File:
        """Validate everything first, then write the bytes, then the record, then its expiry timer;
        if a later step fails the earlier ones are undone, so a refused upload stores nothing."""
        if len(content) > self.max_bytes:
            raise PayloadTooLarge.over("file", self.max_bytes)
        name, ctype = self._check(filename, content_type, metadata)
        md5 = hashlib.md5(content, usedforsecurity=False).hexdigest()
        digest = BlobDigest(size=len(content), sha256=hashlib.sha256(content).hexdigest(), md5=md5)

        def write(key: str) -> BlobDigest:
            self.blobs.put(key, content, content_type=ctype)
            return digest

        return self._store(viewer, name, ctype, metadata, write)

    def create_from_upload(
        self, viewer: Account, upload_key: str, *, filename: str | None, content_type: str | None, metadata: Any = None
    ) -> File:
        """A file made from bytes its owner sent straight to the store (`POST /v1/uploads`), never
        held in this process: the store copies them to the file's place, and that copy is what is
        measured and hashed (the uploader may send again to its URL at any moment). NotFound if
        the upload has no bytes."""
        name, ctype = self._check(filename, content_type, metadata)

        def write(key: str) -> BlobDigest:
            return copy_and_digest(
                self.blobs, upload_key, key, max_bytes=self.max_bytes, what="file", content_type=ctype
            )

        return self._store(viewer, name, ctype, metadata, write)

    @staticmethod
    def _check(filename: str | None, content_type: str | None, metadata: Any) -> tuple[str, str]:
        if metadata is not None and not isinstance(metadata, dict):
            raise Unprocessable("`metadata` must be a JSON object.", field="metadata")
        if metadata is not None and not strictjson.is_strict(metadata):
            raise InvalidRequest(
                "`metadata` must be strict JSON: finite numbers, valid Unicode, nested at most "
                f"{strictjson.MAX_DEPTH} deep.",
                field="metadata",
            )
        return safe_filename(filename), check_content_type(content_type)

    def _store(self, viewer: Account, name: str, ctype: str, metadata: Any, write: Callable[[str], BlobDigest]) -> File:
        """Write the bytes (`write(key)`), then the record, then its expiry timer; a later step
        that fails undoes the earlier ones."""
        file_id = new_prediction_id()
        key = f"files/{viewer.username}/{file_id}/{name}"
        digest = write(key)
        now = self.clock.now()
        record = File(
            id=file_id,
            owner=viewer.username,
            name=name,
            content_type=ctype,
            size=digest.size,
            etag=digest.md5,
            checksums={"sha256": digest.sha256, "md5": digest.md5},
            metadata=metadata or {},
            created_at=now,
            expires_at=add_seconds(now, self.ttl_seconds),
            blob_key=key,
        )
        try:
            self.state.create_file(record)
        except BaseException:
            self.blobs.delete(key)
            raise
        if self.outbox is not None:
            try:
                self.outbox.add(
                    [
                        OutboxEvent(
                            id=uuid.uuid4().hex,
                            kind=TIMER,
                            prediction_id="",
                            payload={"timer": "file_expiry", "file_id": record.id},
                            due_at=record.expires_at,
                            created_at=now,
                        )
                    ]
                )
            except BaseException:  # a file nothing would ever expire: undo it
                self.state.delete_file(record.id)
                self.blobs.delete(key)
                raise
        return record

    def get(self, viewer: Account, file_id: str) -> File:
        record = self.state.get_file(file_id)
        if record is None or not self.access.can_act_for(viewer, record.owner) or record.expires_at <= self.clock.now():
            raise NotFound(NOT_FOUND)
        return record

    def list(self, viewer: Account, *, cursor: str | None, limit: int) -> Page[File]:
        return self.state.list_files(viewer.username, cursor=cursor, limit=limit)

    def delete(self, viewer: Account, file_id: str) -> None:
        record = self.get(viewer, file_id)
        self.blobs.delete(record.blob_key)
        self.state.delete_file(record.id)

    def check_input(self, viewer: Account, url: str) -> bool:
        """True if `url` is one of the viewer's files; raises 422 if it looks like a file URL of
        ours that is missing, expired or someone else's."""
        file_id = file_id_from_url(url)
        if file_id is None:
            return False
        record = self.state.get_file(file_id)
        if record is None or not self.access.can_act_for(viewer, record.owner) or record.expires_at <= self.clock.now():
            raise Unprocessable(f"The file {url} does not exist, has expired, or is not yours.")
        return True

    def fetchable_url(self, url: str, *, expires_in: int = 3600) -> str:
        """For the runner: our file URL -> a signed URL the model server can download."""
        file_id = file_id_from_url(url)
        record = self.state.get_file(file_id) if file_id else None
        if record is None:
            return url
        return self.blobs.signed_url(record.blob_key, expires_in=expires_in, filename=record.name)


def file_json(f: File, base_url: str) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.name,
        "content_type": f.content_type,
        "size": f.size,
        "etag": f.etag,
        "checksums": f.checksums,
        "metadata": f.metadata,
        "created_at": f.created_at,
        "expires_at": f.expires_at,
        "urls": {"get": f"{base_url}/v1/files/{f.id}"},
    }
