"""BlobStore contract: run on the local disk and on S3 (moto)."""

from __future__ import annotations

import hashlib
import os

import pytest

from cogplane.domain.errors import NotFound, PayloadTooLarge


def test_put_get_head(blobs):
    blobs.put("predictions/p1/out.png", b"\x89PNG data", content_type="image/png")
    assert blobs.get("predictions/p1/out.png") == b"\x89PNG data"
    info = blobs.head("predictions/p1/out.png")
    assert (info.key, info.size, info.content_type) == ("predictions/p1/out.png", 9, "image/png")
    blobs.put("predictions/p1/out.png", b"new", content_type="image/webp")  # overwrite
    assert blobs.get("predictions/p1/out.png") == b"new"
    assert blobs.head("predictions/p1/out.png").size == 3


def test_missing_blob(blobs):
    assert blobs.head("files/nothing") is None
    with pytest.raises(NotFound):
        blobs.get("files/nothing")


def test_blob_without_content_type(blobs):
    blobs.put("files/raw.bin", b"")
    assert blobs.get("files/raw.bin") == b""
    info = blobs.head("files/raw.bin")
    assert (info.size, info.content_type) == (0, None)


def test_delete_is_idempotent(blobs):
    blobs.put("files/a", b"a")
    blobs.delete("files/a")
    assert blobs.head("files/a") is None
    blobs.delete("files/a")
    blobs.delete("files/never")


def test_delete_prefix(blobs):
    for key in [
        "predictions/p1/in.txt",
        "predictions/p1/out/0.png",
        "predictions/p1/out/1.png",
        "predictions/p10/in.txt",
        "predictions/p2/in.txt",
    ]:
        blobs.put(key, key.encode())
    assert blobs.delete_prefix("predictions/p1/") == 3
    assert blobs.head("predictions/p1/in.txt") is None
    assert blobs.head("predictions/p1/out/1.png") is None
    assert blobs.get("predictions/p10/in.txt") == b"predictions/p10/in.txt"
    assert blobs.get("predictions/p2/in.txt") == b"predictions/p2/in.txt"
    assert blobs.delete_prefix("predictions/p1/") == 0
    assert blobs.delete_prefix("nothing/") == 0


def test_digest_reads_the_blob_in_pieces(blobs):
    data = os.urandom(2 * 1024 * 1024 + 12345)  # past the 1 MiB piece twice, and a short last one
    blobs.put("uploads/u/one", data)
    digest = blobs.digest("uploads/u/one", max_bytes=len(data))
    assert (digest.size, digest.sha256, digest.md5) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
    )
    with pytest.raises(PayloadTooLarge):
        blobs.digest("uploads/u/one", max_bytes=len(data) - 1)
    with pytest.raises(NotFound):
        blobs.digest("uploads/u/none", max_bytes=10)


def test_copy_is_made_by_the_store(blobs):
    blobs.put("uploads/u/one", b"first bytes", content_type="text/plain")
    blobs.copy("uploads/u/one", "files/u/f1/one.bin", content_type="image/png")
    assert blobs.get("files/u/f1/one.bin") == b"first bytes"
    assert blobs.head("files/u/f1/one.bin").content_type == "image/png"
    assert blobs.get("uploads/u/one") == b"first bytes"  # the source stays (its owner deletes it)
    blobs.put("uploads/u/one", b"other bytes!")  # the copy is its own: the source's next bytes are not in it
    assert blobs.get("files/u/f1/one.bin") == b"first bytes"
    blobs.copy("uploads/u/one", "files/u/f1/one.bin")
    assert blobs.get("files/u/f1/one.bin") == b"other bytes!"
    with pytest.raises(NotFound):
        blobs.copy("uploads/u/none", "bundles/abc")
    assert blobs.head("bundles/abc") is None


def test_signed_url(blob_backend):
    blobs = blob_backend.blobs
    blobs.put("predictions/p1/out put.png", b"img", content_type="image/png")
    url = blobs.signed_url("predictions/p1/out put.png", expires_in=600)
    assert url.startswith(("http://", "https://"))
    assert blob_backend.verify(url, "predictions/p1/out put.png")
    assert not blob_backend.verify(url, "predictions/p1/other.png")
    named = blobs.signed_url("predictions/p1/out put.png", filename="résumé output.png")
    assert blob_backend.verify(named, "predictions/p1/out put.png")
    if blob_backend.name == "local":  # only the local store can check signatures itself
        assert not blob_backend.verify(url.replace("signature=", "signature=x"), "predictions/p1/out put.png")


def test_signed_url_sets_the_download_name_on_s3(blob_backend):
    if blob_backend.name != "aws":
        pytest.skip("the local store serves names through the API")
    url = blob_backend.blobs.signed_url("files/a.bin", filename="résumé.pdf")
    assert "response-content-disposition=" in url
    assert "r%25C3%25A9sum%25C3%25A9.pdf" in url or "r%C3%A9sum%C3%A9.pdf" in url


def test_upload_url(blob_backend):
    """Where a client sends a blob's bytes itself: S3's presigned POST (the size limit in its
    policy), or the local store's signed PUT of the API (checked by the store)."""
    target = blob_backend.blobs.upload_url("uploads/alice/u1", max_bytes=1000, expires_in=600)
    assert target["url"].startswith(("http://", "https://")) and target["method"] in ("PUT", "POST")
    if blob_backend.name == "aws":
        import base64
        import json

        fields = target["fields"]
        assert fields["key"] == "blob-prefix/uploads/alice/u1" and "policy" in fields
        policy = json.loads(base64.b64decode(fields["policy"]))
        assert ["content-length-range", 1, 1000] in policy["conditions"]
    else:
        from urllib.parse import parse_qs, unquote, urlsplit

        parts = urlsplit(target["url"])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        key = unquote(parts.path).split("/v1/blobs/", 1)[1]
        store = blob_backend.blobs
        assert key == "uploads/alice/u1" and query["max"] == "1000"
        assert store.verify_upload(key, int(query["expires"]), 1000, query["signature"])
        assert not store.verify_upload(key, int(query["expires"]), 10**9, query["signature"])
        assert not store.verify(key, int(query["expires"]), query["signature"]), "an upload URL is no download URL"


def test_the_deployed_wrapper_delegates_every_blob_store_method():
    """The API's and the runner's store deployed is S3 inside SignedUrlBlobStore: a method of the
    port it lacks works on `make up` and fails only deployed (as `copy` once did, on the simulation)."""
    from cogplane.adapters.aws.signed import SignedUrlBlobStore
    from cogplane.ports import BlobStore

    methods = {name for name, value in vars(BlobStore).items() if callable(value) and not name.startswith("_")}
    assert {"put", "get", "digest", "copy", "upload_url", "signed_url"} <= methods
    assert sorted(methods - set(vars(SignedUrlBlobStore))) == []
