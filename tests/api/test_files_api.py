"""The files API through TestClient, with both clients' multipart styles."""

from __future__ import annotations

import json

import replicate.file as rf


def test_upload_with_metadata_as_form_field_python_style(client):
    r = client.post(
        "/v1/files",
        files={"content": ("hello.txt", b"hi there", "text/plain")},
        data={"metadata": json.dumps({"a": 1})},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    rf.File(**body)
    assert body["name"] == "hello.txt" and body["content_type"] == "text/plain" and body["size"] == 8
    assert body["metadata"] == {"a": 1}
    assert body["checksums"]["md5"] == body["etag"] and len(body["checksums"]["sha256"]) == 64
    assert body["urls"]["get"] == f"https://cogplane.test/v1/files/{body['id']}"
    assert body["expires_at"] > body["created_at"]


def test_upload_with_metadata_as_json_file_part_js_style(client):
    r = client.post(
        "/v1/files",
        files=[
            ("content", ("a.bin", b"\x00\x01", "application/octet-stream")),
            ("metadata", ("blob", b'{"k": "v"}', "application/json")),
        ],
    )
    assert r.status_code == 201 and r.json()["metadata"] == {"k": "v"}


def test_get_list_delete_then_404_and_private(client, bob):
    fid = client.post("/v1/files", files={"content": ("x.txt", b"x", "text/plain")}).json()["id"]
    assert client.get(f"/v1/files/{fid}").status_code == 200
    assert bob.get(f"/v1/files/{fid}").status_code == 404
    assert [f["id"] for f in client.get("/v1/files").json()["results"]] == [fid]
    assert bob.get("/v1/files").json()["results"] == []
    assert client.delete(f"/v1/files/{fid}").status_code == 204
    assert client.get(f"/v1/files/{fid}").status_code == 404
    assert client.delete(f"/v1/files/{fid}").status_code == 404


def test_too_large_is_413_and_missing_content_422(client, services):
    services.files.max_bytes = 10
    r = client.post("/v1/files", files={"content": ("big", b"x" * 100, "text/plain")})
    assert r.status_code == 413
    assert client.post("/v1/files", files={"other": ("a", b"b", "text/plain")}).status_code == 422
    assert client.post("/v1/files", json={"content": "x"}).status_code == 415


def test_file_url_is_accepted_as_input_only_for_its_owner(client, bob, services, schema):
    from tests.api.conftest import push

    v = push(client, "alice", "img", schema, visibility="public")
    url = client.post("/v1/files", files={"content": ("a.png", b"png", "image/png")}).json()["urls"]["get"]
    r = client.post("/v1/predictions", json={"version": v["id"], "input": {"prompt": "x", "image": url}})
    assert r.status_code == 201 and r.json()["input"]["image"] == url
    r = bob.post("/v1/predictions", json={"version": v["id"], "input": {"prompt": "x", "image": url}})
    assert r.status_code == 422 and r.json()["field"] == "image"
    signed = services.files.fetchable_url(url)
    assert "/v1/blobs/files/alice/" in signed and "signature=" in signed


def test_a_signed_blob_url_answers_head_and_a_tampered_one_404(client, services):
    services.blobs.put("files/alice/h/a.txt", b"0123456789", content_type="text/plain")
    url = services.blobs.signed_url("files/alice/h/a.txt")
    path = url[url.index("/v1/blobs/") :]
    r = client.head(path, headers={"Authorization": ""})
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "10"
    assert r.headers["content-type"].startswith("text/plain")
    r = client.head(path.replace("signature=", "signature=x"), headers={"Authorization": ""})
    assert r.status_code == 404
