"""Uploads straight to the store (`POST /v1/uploads`), then a file or a source version made from
them: on `make up` a signed PUT of the API's own (deployed: an S3 presigned POST)."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import replicate.file as rf

from tests.conftest import make_bundle


def _upload(client, data: bytes, purpose: str = "file") -> str:
    r = client.post("/v1/uploads", json={"purpose": purpose, "size": len(data)})
    assert r.status_code == 201, r.text
    body = r.json()
    target = body["upload"]
    assert target["method"] == "PUT" and target["fields"] == {}
    url = urlsplit(target["url"])
    assert url.path.startswith("/v1/blobs/uploads/alice/")
    sent = client.put(f"{url.path}?{url.query}", content=data, headers={"Authorization": ""})
    assert sent.status_code == 204, sent.text
    return body["id"]


def test_a_file_made_from_an_upload(client):
    data = b"\x00big bytes\xff" * 1000
    upload_id = _upload(client, data)
    r = client.post("/v1/files", json={"upload": upload_id, "filename": "big.bin", "type": "application/x-big"})
    assert r.status_code == 201, r.text
    body = r.json()
    rf.File(**body)
    assert body["name"] == "big.bin" and body["size"] == len(data) and body["content_type"] == "application/x-big"
    assert body["checksums"]["sha256"] == hashlib.sha256(data).hexdigest()
    # the upload is used up
    again = client.post("/v1/files", json={"upload": upload_id})
    assert again.status_code == 422 and "has no bytes" in again.json()["detail"]


def test_a_version_pushed_from_an_uploaded_bundle(client, schema):
    client.post("/v1/models", json={"owner": "alice", "name": "big", "visibility": "private"})
    bundle = make_bundle({"cog.yaml": "predict: predict.py:Predictor\n", "predict.py": "x"})
    upload_id = _upload(client, bundle, "bundle")
    r = client.post(
        "/v1/models/alice/big/versions",
        json={"upload": upload_id, "schema": schema, "config": {"predict": "predict.py:Predictor"}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] == hashlib.sha256(bundle).hexdigest()


def test_uploads_are_refused_clearly_and_store_nothing(client, bob, services):
    assert client.post("/v1/uploads", json={"purpose": "x"}).status_code == 422
    assert client.post("/v1/uploads", json={"size": -1}).status_code == 422
    too_big = client.post("/v1/uploads", json={"purpose": "file", "size": 101 * 1024 * 1024})
    assert too_big.status_code == 413 and "100 MiB" in too_big.json()["detail"]
    r = client.post("/v1/uploads", json={"size": 3}).json()
    url = urlsplit(r["upload"]["url"])
    assert client.put(f"{url.path}?{url.query.replace('signature=', 'signature=x')}", content=b"abc").status_code == 404
    assert client.put(f"{url.path.replace('/alice/', '/bob/')}?{url.query}", content=b"abc").status_code == 404
    # bob cannot take alice's upload (ids are scoped to their owner)
    assert client.put(f"{url.path}?{url.query}", content=b"abc").status_code == 204
    assert bob.post("/v1/files", json={"upload": r["id"]}).status_code == 422
    assert client.post("/v1/files", json={"upload": "../../x"}).status_code == 422
    assert services.blobs.head(f"uploads/alice/{r['id']}") is not None


def test_an_upload_over_its_limit_is_413(client, services):
    services.settings.max_file_bytes = 1024
    r = client.post("/v1/uploads", json={"purpose": "file"}).json()
    assert r["max_bytes"] == 1024
    url = urlsplit(r["upload"]["url"])
    sent = client.put(f"{url.path}?{url.query}", content=b"x" * 2048)
    assert sent.status_code == 413
    assert services.blobs.head(f"uploads/alice/{r['id']}") is None


def test_an_upload_bigger_than_its_declared_size_is_413_and_stores_nothing(client, services):
    r = client.post("/v1/uploads", json={"purpose": "file", "size": 3}).json()
    assert r["max_bytes"] == 3  # what the signed target accepts (S3's policy deployed, the PUT's `max` here)
    url = urlsplit(r["upload"]["url"])
    sent = client.put(f"{url.path}?{url.query}", content=b"x" * 1000)
    assert sent.status_code == 413 and sent.headers["content-type"].startswith("application/problem+json")
    assert services.blobs.head(f"uploads/alice/{r['id']}") is None
    assert client.put(f"{url.path}?{url.query}", content=b"abc").status_code == 204
