"""The front door, case by case (issue 10, items 4-7): each request that used to answer 500 -
often after storing something - is now refused with a 4xx problem+json and stores nothing, on
both adapter sets. Every test compares everything stored (records and blob keys) before/after."""

from __future__ import annotations

import base64
import json

import pytest

from cogplane.domain import strictjson
from tests.conftest import HELLO_SCHEMA, make_bundle

DEEP = "[" * 10_000 + "]" * 10_000  # Python's json hits RecursionError at ~1000
TOO_DEEP = "[" * (strictjson.MAX_DEPTH + 1) + "]" * (strictjson.MAX_DEPTH + 1)
BAD_VALUES = {  # raw JSON text of a value that strict JSON refuses
    "lone surrogate": '"\\ud800"',
    "lone low surrogate": '"a\\udc00b"',
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "overflowing float": "1e400",
    "10,000 deep": DEEP,
    "65 deep": TOO_DEEP,
}


def problem(r, *statuses: int) -> dict:
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert body["status"] == r.status_code and body["detail"]
    return body


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- JSON bodies ------------------------------------------------------------------------
def test_prediction_with_non_strict_json_input_is_400_and_stores_nothing(stack):
    """`{"input":{"prompt":"\\ud800"}}` used to answer 500, store the prediction and run it."""
    version = stack.push()["id"]
    before = stack.stored()
    for case, value in BAD_VALUES.items():
        for path, extra in (
            ("/v1/predictions", f'"version": "{version}", '),
            ("/v1/models/alice/hello/predictions", ""),
        ):
            body = "{" + extra + '"input": {"prompt": ' + value + "}}"
            r = stack.client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert "not valid JSON" in problem(r, 400)["detail"], case
    assert stack.stored() == before


def test_a_lone_surrogate_in_a_key_is_refused_too(stack):
    version = stack.push()["id"]
    before = stack.stored()
    body = '{"version": "' + version + '", "input": {"prompt": "x", "\\udc00": 1}}'
    r = stack.client.post("/v1/predictions", content=body, headers={"Content-Type": "application/json"})
    assert "surrogate" in problem(r, 400)["detail"]
    assert stack.stored() == before


def test_a_good_prediction_and_a_surrogate_pair_still_go_through(stack):
    """The control: a valid pair (an emoji, escaped) is fine, and the list still reads."""
    version = stack.push()["id"]
    body = '{"version": "' + version + '", "input": {"prompt": "hi \\ud83d\\ude00"}}'
    r = stack.client.post("/v1/predictions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["input"]["prompt"] == "hi \U0001f600"
    assert stack.client.get("/v1/predictions").status_code == 200


def test_other_json_bodies_are_strict_too(stack):
    stack.push()
    before = stack.stored()
    for method, path, body in (
        (m, p, b % value)
        for value in BAD_VALUES.values()
        for m, p, b in (
            ("POST", "/v1/models", '{"owner": "alice", "name": "other", "description": %s}'),
            ("PATCH", "/v1/models/alice/hello", '{"description": %s}'),
            ("POST", "/v1/deployments", '{"name": "d", "model": "alice/hello", "version": %s}'),
        )
    ):
        r = stack.client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        problem(r, 400)
    assert stack.stored() == before
    assert stack.client.get("/v1/models/alice/other").status_code == 404
    assert stack.client.get("/v1/deployments").json()["results"] == []


# --- Cancel-After ---------------------------------------------------------------------------
def test_cancel_after_out_of_range_or_malformed_is_400_and_stores_nothing(stack):
    version = stack.push()["id"]
    before = stack.stored()
    for value in [
        "1e300",
        "inf",
        "-inf",
        "nan",
        "100000000h",
        "25h",
        "86401",
        "1_000",
        "9" * 400 + "s",
        "0",
        "-5s",
        "5x",
        "1h" * 30,
    ]:
        r = stack.client.post(
            "/v1/predictions", json={"version": version, "input": {"prompt": "x"}}, headers={"Cancel-After": value}
        )
        assert "at most 24h" in problem(r, 400)["detail"], value
    assert stack.stored() == before
    for value in ["24h", "1h30m", "90", "500ms", "1.5h"]:  # within a day: accepted
        r = stack.client.post(
            "/v1/predictions", json={"version": version, "input": {"prompt": "x"}}, headers={"Cancel-After": value}
        )
        assert r.status_code == 201, (value, r.text)


# --- version pushes ---------------------------------------------------------------------
def _push_raw(stack, schema_text: str, config_text: str = '{"predict": "p.py:P"}', content: bytes | None = None):
    bundle = content or make_bundle({"cog.yaml": "predict: p.py:P\n", "p.py": "different"})
    return stack.client.post(
        "/v1/models/alice/hello/versions",
        files={
            "bundle": ("bundle.tar.gz", bundle, "application/gzip"),
            "schema": ("schema.json", schema_text.encode("utf-8", "surrogatepass")),
        },
        data={"config": config_text},
    )


def test_a_push_with_a_non_strict_schema_is_400_and_stores_nothing(stack):
    """It used to answer 500 yet store the version and make it the model's latest."""
    first = stack.push()
    before = stack.stored()
    for value in BAD_VALUES.values():
        schema = json.dumps(HELLO_SCHEMA)[:-1] + ', "x-extra": ' + value + "}"
        problem(_push_raw(stack, schema), 400)
        problem(_push_raw(stack, json.dumps(HELLO_SCHEMA), '{"predict": ' + value + "}"), 400)
    assert stack.stored() == before and before["latest"] == first["id"]


MISSHAPEN = [
    {"components": []},
    {"components": {"schemas": {"Input": 1, "Output": {}}}},
    {"components": {"schemas": {"Input": {"properties": []}, "Output": {}}}},
    {"components": {"schemas": {"Input": {"properties": {"a": 1}}, "Output": {}}}},
    {"components": {"schemas": {"Input": {"required": "a"}, "Output": {}}}},
    [1, 2],
]


def test_a_push_with_a_misshapen_schema_is_422_and_stores_nothing(stack):
    stack.push()
    before = stack.stored()
    for schema in MISSHAPEN:
        problem(_push_raw(stack, json.dumps(schema)), 422)
    assert stack.stored() == before


def test_a_schema_part_that_is_not_utf8_is_400(stack):
    stack.push()
    before = stack.stored()
    r = stack.client.post(
        "/v1/models/alice/hello/versions",
        files={
            "bundle": ("b.tar.gz", b"\x1f\x8bnot-really", "application/gzip"),
            "schema": ("s.json", b'{"a": "\xff"}'),
        },
        data={"config": "{}"},
    )
    problem(r, 400)
    assert stack.stored() == before


def test_an_image_push_with_a_non_strict_schema_is_400_and_stores_nothing(stack):
    stack.push()
    before = stack.stored()
    for value in BAD_VALUES.values():
        schema = json.dumps(HELLO_SCHEMA)[:-1] + ', "x": ' + value + "}"
        body = '{"image": "r.example/m@sha256:' + "ab" * 32 + '", "openapi_schema": ' + schema + "}"
        r = stack.client.post(
            "/v1/models/alice/hello/versions", content=body, headers={"Content-Type": "application/json"}
        )
        problem(r, 400)
    assert stack.stored() == before


def test_a_push_whose_record_cannot_be_written_leaves_no_bundle(stack, monkeypatch):
    """The bundle is written before the record; when the record fails, the bundle goes again."""
    stack.push()
    before = stack.stored()

    def broken(version):
        raise RuntimeError("the state store is down")

    monkeypatch.setattr(stack.services.state, "put_version", broken)
    assert _push_raw(stack, json.dumps(HELLO_SCHEMA)).status_code == 500
    monkeypatch.undo()
    assert stack.stored() == before


def test_a_push_whose_model_update_fails_leaves_no_version(stack, monkeypatch):
    """A version stored but not made latest is half a push: it is removed again."""
    stack.push()
    before = stack.stored()

    def broken(model):
        raise RuntimeError("the state store is down")

    monkeypatch.setattr(stack.services.state, "update_model", broken)
    assert _push_raw(stack, json.dumps(HELLO_SCHEMA)).status_code == 500
    monkeypatch.undo()
    assert stack.stored() == before


# --- file uploads ---------------------------------------------------------------------------
def test_file_metadata_that_is_not_strict_json_is_400_and_stores_nothing(stack):
    """Metadata with NaN used to answer 500 with the record created."""
    before = stack.stored()
    for value in BAD_VALUES.values():
        meta = '{"k": ' + value + "}"
        # Python sends metadata as a form field, JS as a JSON file part
        r = stack.client.post(
            "/v1/files", files={"content": ("a.txt", b"hello", "text/plain")}, data={"metadata": meta}
        )
        assert "`metadata`" in problem(r, 400)["detail"]
        r = stack.client.post(
            "/v1/files",
            files={
                "content": ("a.txt", b"hello", "text/plain"),
                "metadata": ("blob", meta.encode(), "application/json"),
            },
        )
        assert "`metadata`" in problem(r, 400)["detail"]
    assert stack.stored() == before


NAMES = [
    ("a\x00b.txt", "ab.txt"),
    ("line\r\nbreak\t.txt", "linebreak.txt"),
    ("../../etc/passwd", ".._.._etc_passwd"),
    ("dir\\name.png", "dir_name.png"),
    ("..", "file"),
    ("\u202egnp.exe", "gnp.exe"),  # a right-to-left override (format character) is dropped
    ("x" * 300 + ".png", "x" * 236 + ".png"),
    ("é" * 200 + ".jpg", "é" * 118 + ".jpg"),  # bytes, not characters: 236 + 4
]


def test_upload_filenames_are_normalised_and_limited(stack):
    """A NUL or a name over 255 bytes used to answer 500 and leave the bytes on disk, unrecorded."""
    for sent, stored in NAMES:
        r = stack.client.post(
            "/v1/files", files={"content": ("ignored", b"data", "text/plain")}, data={"filename": sent}
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["name"] == stored and len(stored.encode()) <= 240
        assert f"files/alice/{body['id']}/{stored}" in stack.blob_keys()
        assert stack.client.get(f"/v1/files/{body['id']}").json()["name"] == stored
        stack.client.delete(f"/v1/files/{body['id']}")
    assert stack.stored()["blobs"] == []


def test_a_nul_in_the_multipart_filename_itself_is_normalised(stack):
    """Raw bytes on the wire (httpx would percent-encode the NUL)."""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="content"; filename="a\x00b\x01.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\ndata\r\n--B--\r\n"
    )
    r = stack.client.post("/v1/files", content=body, headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert r.status_code == 201 and r.json()["name"] == "ab.txt", r.text


def test_an_upload_with_a_bad_type_is_400_and_stores_nothing(stack):
    before = stack.stored()
    for ctype in ["text/plain\r\nX-Evil: 1", "nonsense", "a/" + "b" * 300]:
        r = stack.client.post("/v1/files", files={"content": ("a.txt", b"data", "text/plain")}, data={"type": ctype})
        problem(r, 400)
    assert stack.stored() == before


@pytest.mark.parametrize("step", ["create_file", "outbox"])
def test_an_upload_whose_record_or_timer_fails_leaves_no_bytes(stack, monkeypatch, step):
    """Bytes used to stay on disk with no record (and no expiry) when the write after them failed."""
    before = stack.stored()

    def broken(*_args, **_kwargs):
        raise RuntimeError("the state store is down")

    if step == "create_file":
        monkeypatch.setattr(stack.services.state, "create_file", broken)
    else:
        monkeypatch.setattr(stack.services.files.outbox, "add", broken)
    r = stack.client.post("/v1/files", files={"content": ("a.txt", b"data", "text/plain")})
    assert r.status_code == 500
    monkeypatch.undo()
    assert stack.stored() == before


# --- cursors ------------------------------------------------------------------------------
TAMPERED = {
    "list and object": b64('{"c":[1],"i":{}}'),
    "an object": b64('{"c":{"a":1},"i":{"b":2}}'),
    "10**30": b64('{"c":' + str(10**30) + ',"i":"x"}'),
    "a bare number": b64(str(10**30)),
    "extra keys": b64('{"c":"2026","i":"x","PK":"a","SK":"b","n":"c","k":"d","o":"e"}'),
    "empty strings": b64('{"PK":"","SK":"","GSI1PK":"","GSI1SK":""}'),
    "NaN": b64('{"c":NaN,"i":NaN}'),
    "deep": b64(DEEP),
    "junk base64": "!!!not*base64~~",
    "not UTF-8": base64.urlsafe_b64encode(b"\xff\xfe{").decode(),
    "non-ASCII": "é",
    "5,000 digits": "9" * 5000,
    "huge": "A" * 20_000,
}
LISTS = [
    "/v1/predictions",
    "/v1/files",
    "/v1/models/alice/hello/versions",
    "/v1/models",
    "/v1/deployments",
    "/v1/models/alice/hello/examples",
    "/v1/collections",
]


def test_tampered_cursors_are_400_on_every_list(stack):
    stack.push()
    for path in LISTS:
        for case, cursor in TAMPERED.items():
            r = stack.client.get(path, params={"cursor": cursor})
            body = problem(r, 400)
            assert "cursor" in body["detail"], (path, case, body)
    for path in ["/v1/models/alice/hello/examples", "/v1/collections"]:  # offsets: plain ASCII digits
        for cursor in ["²", "-1", "1.5", "1e3", "0x10"]:
            problem(stack.client.get(path, params={"cursor": cursor}), 400)


def test_real_cursors_still_page_through_everything(stack):
    stack.services.settings.page_size = 2
    ids = {
        stack.client.post("/v1/files", files={"content": (f"{n}.txt", b"x", "text/plain")}).json()["id"]
        for n in range(5)
    }
    seen, url = [], "/v1/files"
    while url:
        page = stack.client.get(url).json()
        seen += [f["id"] for f in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(ids)


# --- signed URLs --------------------------------------------------------------------------------
def test_malformed_signed_blob_urls_are_4xx_without_auth(stack):
    anonymous = stack.client.__class__(stack.client.app, raise_server_exceptions=False)
    for query in [
        "expires=9999999999&signature=%C3%9C",
        "expires=9999999999&signature=%FF%FE",
        "expires=" + "9" * 30 + "&signature=abc",
        "expires=-1&signature=abc",
        "expires=0&signature=",
        "expires=9999999999&signature=" + "A" * 10_000,
    ]:
        for key in ["x", "files/alice/x/a.txt", "a/../b"]:
            problem(anonymous.get(f"/v1/blobs/{key}?{query}"), 400, 404)
    for query in ["expires=abc&signature=x", "expires=1e5&signature=x", "expires=" + "9" * 5000]:
        problem(anonymous.get(f"/v1/blobs/x?{query}"), 422)


def test_a_tampered_signature_of_a_real_file_url_is_404(stack):
    if stack.backend != "local":
        pytest.skip("S3 serves its own presigned URLs")
    file_id = stack.client.post("/v1/files", files={"content": ("a.txt", b"data", "text/plain")}).json()["id"]
    url = stack.client.get(f"/v1/files/{file_id}/download", follow_redirects=False).headers["location"]
    path = url.split("https://cogplane.test", 1)[1]
    anonymous = stack.client.__class__(stack.client.app, raise_server_exceptions=False)
    assert anonymous.get(path).content == b"data"
    assert anonymous.get(path[:-3] + "%C3%9C").status_code == 404


def test_a_session_cookie_with_non_ascii_is_treated_as_logged_out(stack):
    anonymous = stack.client.__class__(stack.client.app, raise_server_exceptions=False)
    r = anonymous.get("/", headers={"Cookie": "cogplane_session=e30.\u00dc".encode("latin-1")})
    assert r.status_code < 500
