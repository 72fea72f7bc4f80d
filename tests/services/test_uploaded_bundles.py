"""Files and versions made from uploads (`POST /v1/uploads`): the bytes are copied by the store and
hashed from that copy, never held in the process (deployed, the API is a Lambda function with 1 GiB
and a bundle may be 512 MiB), and what is hashed is what is kept even if the uploader sends again."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import pytest

from cogplane.domain.errors import NotFound, PayloadTooLarge
from cogplane.services.catalog import UPLOADED_BUNDLES, bundle_key
from tests.conftest import HELLO_SCHEMA

SIZE = 24 * 1024 * 1024


@pytest.fixture
def alice(local):
    account = local.state.get_account("alice")
    local.catalog.create_model(account, {"owner": "alice", "name": "big", "visibility": "private"})
    return account


def push(services, account, key, max_bytes=SIZE):
    return services.catalog.push_uploaded_version(
        account,
        "alice",
        "big",
        upload_key=key,
        max_bytes=max_bytes,
        schema=HELLO_SCHEMA,
        config={"predict": "predict.py:Predictor"},
        cog_version="0.23.1",
    )


def peak_bytes(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_big_upload_becomes_a_version_and_a_file_without_being_held_in_memory(local, alice):
    data = os.urandom(SIZE)
    local.blobs.put("uploads/alice/u1", data)
    (version, created), peak = peak_bytes(lambda: push(local, alice, "uploads/alice/u1"))
    assert created and version.id == hashlib.sha256(data).hexdigest() and version.size == SIZE
    assert version.bundle_key.startswith(UPLOADED_BUNDLES)
    assert local.blobs.get(version.bundle_key) == data
    assert peak < SIZE / 8, f"{peak / 1e6:.1f} MB held for a {SIZE / 1e6:.0f} MB bundle"

    record, peak = peak_bytes(
        lambda: local.files.create_from_upload(alice, "uploads/alice/u1", filename="w.bin", content_type=None)
    )
    assert (record.size, record.checksums["sha256"]) == (SIZE, version.id)
    assert record.checksums["md5"] == hashlib.md5(data).hexdigest() == record.etag
    assert local.blobs.get(record.blob_key) == data
    assert peak < SIZE / 8, f"{peak / 1e6:.1f} MB held for a {SIZE / 1e6:.0f} MB file"


class Resends:
    """The store, with an uploader who sends other bytes to its upload URL right after each copy."""

    def __init__(self, blobs):
        self.blobs = blobs

    def __getattr__(self, name):
        return getattr(self.blobs, name)

    def copy(self, source, dest, **kwargs):
        self.blobs.copy(source, dest, **kwargs)
        self.blobs.put(source, b"other bytes, sent after the copy")


def test_what_is_hashed_is_what_is_kept_when_the_uploader_sends_again(local, alice):
    data = b"the bundle as first sent" * 100
    local.blobs.put("uploads/alice/u2", data)
    local.catalog.blobs = local.files.blobs = Resends(local.blobs)
    version, _ = push(local, alice, "uploads/alice/u2")
    assert version.id == hashlib.sha256(local.blobs.get(version.bundle_key)).hexdigest()
    local.blobs.put("uploads/alice/u2", data)
    record = local.files.create_from_upload(alice, "uploads/alice/u2", filename=None, content_type=None)
    assert record.checksums["sha256"] == hashlib.sha256(local.blobs.get(record.blob_key)).hexdigest()


def test_pushing_the_same_bytes_again_keeps_one_copy(local, alice):
    data = b"same bundle" * 1000
    local.blobs.put("uploads/alice/u3", data)
    first, created = push(local, alice, "uploads/alice/u3")
    assert created
    again, created = push(local, alice, "uploads/alice/u3")
    assert not created and again.bundle_key == first.bundle_key
    assert [k for k in _keys(local) if k.startswith("bundles/")] == [first.bundle_key]
    # bytes a direct push stored already are shared, as direct pushes share them
    local.catalog.create_model(alice, {"owner": "alice", "name": "other", "visibility": "private"})
    direct, _ = local.catalog.push_version(
        alice, "alice", "other", bundle=b"direct" * 10, schema=HELLO_SCHEMA, config={}, cog_version="0.23.1"
    )
    local.blobs.put("uploads/alice/u4", b"direct" * 10)
    via_upload, created = push(local, alice, "uploads/alice/u4")
    assert created and via_upload.bundle_key == direct.bundle_key == bundle_key(direct.id)
    assert sorted(k for k in _keys(local) if k.startswith("bundles/")) == sorted([first.bundle_key, direct.bundle_key])


def test_a_refused_upload_stores_nothing(local, alice):
    local.blobs.put("uploads/alice/u5", b"x" * 2000)
    with pytest.raises(PayloadTooLarge, match="larger than"):
        push(local, alice, "uploads/alice/u5", max_bytes=1000)
    local.files.max_bytes = 1000
    with pytest.raises(PayloadTooLarge, match="larger than"):
        local.files.create_from_upload(alice, "uploads/alice/u5", filename=None, content_type=None)
    local.blobs.put("uploads/alice/empty", b"")
    with pytest.raises(Exception, match="empty"):
        push(local, alice, "uploads/alice/empty")
    with pytest.raises(NotFound):
        push(local, alice, "uploads/alice/none")
    assert sorted(_keys(local)) == ["uploads/alice/empty", "uploads/alice/u5"]
    assert local.state.get_model("alice", "big").latest_version_id is None


def _keys(services):
    root = services.blobs.root / "data"
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
