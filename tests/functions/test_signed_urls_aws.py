"""Output and file URLs on the deployed adapters are signed by the platform (HMAC with the
SigningKeys secret), not presigned by a Lambda role: they live exactly as long as the platform
says, by its clock, and the stream function serves them (its own process, the same secret)."""

from __future__ import annotations

import boto3
from fastapi.testclient import TestClient

from cogplane.adapters.aws.signed import REQUEST_BASE, SignedUrlBlobStore
from cogplane.clock import ManualClock
from cogplane.settings import Settings
from cogplane.wiring import build_aws
from functions.api.app import create_app
from functions.stream.server import StreamRoutesOnly
from tests.functions.conftest import REGION

STREAM = "https://abc.lambda-url.us-east-1.on.aws"


def _secret() -> str:
    return boto3.client("secretsmanager", region_name=REGION).create_secret(Name="SigningKeys", SecretString="q" * 64)[
        "ARN"
    ]


def test_output_urls_live_exactly_their_hour_by_the_platforms_clock(aws):
    arn = _secret()
    clock = ManualClock()
    api = build_aws(
        Settings(signing_secret_arn=arn, public_url="https://api.example/api", stream_url=STREAM),
        clients=aws,
        clock=clock,
    )
    assert isinstance(api.blobs, SignedUrlBlobStore)
    api.blobs.put("predictions/x/out put.png", b"\x89PNG bytes", content_type="image/png")
    url = api.blobs.signed_url("predictions/x/out put.png", expires_in=3600)
    assert url.startswith(f"{STREAM}/v1/blobs/predictions/x/out%20put.png?expires=") and "X-Amz" not in url

    # the stream function: its own services over the same secret and (here) the same clock
    stream = build_aws(Settings(signing_secret_arn=arn), clients=aws, clock=clock)
    client = TestClient(StreamRoutesOnly(create_app(stream)), base_url=STREAM)
    path = url.removeprefix(STREAM)
    clock.advance(59 * 60)
    r = client.get(path, headers={"Authorization": "Bearer r8_anything"})  # replicate-python sends its token
    assert r.status_code == 200 and r.content == b"\x89PNG bytes"
    assert r.headers["content-type"] == "image/png" and "out put.png" in r.headers["content-disposition"]
    clock.advance(2 * 60)  # 61 minutes
    r = client.get(path)
    assert r.status_code == 404 and "expired" in r.json()["detail"]
    assert client.get(path.replace("signature=", "signature=x")).status_code == 404


def test_the_stream_function_signs_with_its_own_url_and_a_tampered_key_is_refused(aws):
    arn = _secret()
    stream = build_aws(Settings(signing_secret_arn=arn), clients=aws)
    stream.blobs.put("predictions/y/a.txt", b"a")
    token = REQUEST_BASE.set(STREAM)
    try:
        url = stream.blobs.signed_url("predictions/y/a.txt")
    finally:
        REQUEST_BASE.reset(token)
    assert url.startswith(f"{STREAM}/v1/blobs/predictions/y/a.txt?")
    client = TestClient(StreamRoutesOnly(create_app(stream)), base_url=STREAM)
    path = url.removeprefix(STREAM)
    assert client.get(path).content == b"a"
    assert client.get(path.replace("a.txt", "b.txt")).status_code == 404
    # without a secret nothing is wrapped: S3's presign, as before
    plain = build_aws(Settings(), clients=aws)
    assert "Signature=" in plain.blobs.signed_url("predictions/y/a.txt")


def test_a_signed_url_answers_head_with_the_objects_headers_and_no_body(aws):
    # curl -I, download managers and proxies ask HEAD first: it was a 405
    arn = _secret()
    stream = build_aws(Settings(signing_secret_arn=arn, stream_url=STREAM), clients=aws)
    stream.blobs.put("predictions/z/out.png", b"\x89PNG 12 bytes", content_type="image/png")
    path = stream.blobs.signed_url("predictions/z/out.png").removeprefix(STREAM)
    client = TestClient(StreamRoutesOnly(create_app(stream)), base_url=STREAM)
    r = client.head(path)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == "image/png" and r.headers["content-length"] == str(len(b"\x89PNG 12 bytes"))
    assert client.head(path.replace("signature=", "signature=x")).status_code == 404
