"""On `make up` the uploads/ prefix is emptied of what is older than a day, as the bucket's
`uploads-backstop` lifecycle rule does deployed: an upload never taken does not fill the disk."""

from __future__ import annotations

import os
import time

from cogplane.adapters.local.disk import DiskBlobStore
from cogplane.clock import SystemClock
from local.pumps import UPLOADS_LIFETIME_SECONDS, Pumps


def _age(blobs: DiskBlobStore, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(blobs.path_of(key), (then, then))


def test_old_blobs_under_the_prefix_are_deleted_and_nothing_else(tmp_path):
    blobs = DiskBlobStore(str(tmp_path), "http://127.0.0.1:1", b"k" * 32, SystemClock())
    blobs.put("uploads/alice/old", b"x" * 10, content_type="application/zip")
    blobs.put("uploads/alice/new", b"y")
    blobs.put("files/alice/old", b"z")
    _age(blobs, "uploads/alice/old", UPLOADS_LIFETIME_SECONDS + 60)
    _age(blobs, "uploads/alice/new", UPLOADS_LIFETIME_SECONDS - 60)
    _age(blobs, "files/alice/old", UPLOADS_LIFETIME_SECONDS * 3)
    stale = tmp_path / "data" / "uploads" / "bob" / ".tmp-abandoned"  # a put that never finished
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 2 * UPLOADS_LIFETIME_SECONDS,) * 2)

    assert blobs.delete_older_than("uploads/", UPLOADS_LIFETIME_SECONDS) == 2
    assert blobs.head("uploads/alice/old") is None
    assert not (tmp_path / "meta" / "uploads" / "alice" / "old.json").exists()
    assert not stale.exists()
    assert blobs.get("uploads/alice/new") == b"y"
    assert blobs.get("files/alice/old") == b"z"  # other prefixes have their own lifetimes
    assert blobs.delete_older_than("uploads/", UPLOADS_LIFETIME_SECONDS) == 0
    assert blobs.delete_older_than("nothing-here/", 0) == 0


def test_the_local_pumps_expire_uploads(services):
    blobs = services.blobs
    assert isinstance(blobs, DiskBlobStore)
    blobs.put("uploads/alice/forgotten", b"bundle")
    _age(blobs, "uploads/alice/forgotten", UPLOADS_LIFETIME_SECONDS + 1)
    pumps = Pumps(services, base_url="http://127.0.0.1:1", uploads_interval=3600)
    assert pumps.expire_uploads() == 1
    assert blobs.head("uploads/alice/forgotten") is None
