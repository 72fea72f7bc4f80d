"""The deployed shape, simulated (`make sim-aws`): the real replicate clients (Python 1.0.7, JS
1.4.0) run models through API Gateway -> the packaged API function (Python 3.12) -> DynamoDB/SQS on
moto -> an ECS task (the runner) -> S3 on moto, with `cogplane push` through the same API.

Needs cdk.out synthesized with the staged Lambda asset (`make test` builds both)."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from tests.system.conftest import REPO, TOKEN, SimStack, node_env

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.own_shape]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    assert (REPO / "cdk.out" / "manifest.json").is_file(), "run `make synth` first (make test does)"
    home = tmp_path_factory.mktemp("sim") / "home"
    # the functions' clock runs ahead by what a test writes here (cogplane.clock.OffsetClock)
    (home.parent / "no-examples").mkdir()
    s = SimStack(
        home,
        # each function and the runner task act with their role's policies (README: SIMAWS_IAM)
        env={"COGPLANE_USER": "admin", "COGPLANE_CLOCK_FILE": str(home.parent / "clock"), "SIMAWS_IAM": "1"},
        examples=home.parent / "no-examples",
    ).start()
    try:
        for name in ("hello",):
            s.cli("push", str(REPO / "examples" / name), f"admin/{name}", "--public")
        for name in ("frames", "tokens", "secret"):
            s.cli("push", str(REPO / "tests" / "fixtures" / "system_models" / name), f"admin/{name}")
        yield s
    finally:
        left = s.stop()
        assert not left, f"processes left behind after Ctrl-C: {left}"


def test_the_url_and_token_are_written_and_the_stage_prefix_is_required(sim):
    assert (sim.home / "url").read_text().strip() == sim.url
    assert (sim.home / "token").read_text().strip() == TOKEN
    base = sim.url.rsplit("/", 1)[0]
    outside = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert outside.status_code == 403 and outside.json() == {"message": "Missing Authentication Token"}
    inside = httpx.get(f"{sim.url}/v1/models/admin/hello", headers={"Authorization": f"Bearer {TOKEN}"})
    assert inside.status_code == 200 and inside.json()["latest_version"]["id"]


def test_python_client_runs_hello(sim):
    client = sim.replicate()
    assert client.run("admin/hello", input={"prompt": "sim"}) == "hello sim"
    prediction = client.predictions.create(model="admin/hello", input={"prompt": "polled"})
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.output == "hello polled"


def test_js_client_runs_hello(sim):
    node = shutil.which("node")
    assert node, "node is required for the JS client tests"
    env = node_env(sim, COGPLANE_HELLO_MODEL="admin/hello")
    result = subprocess.run(
        [node, "--test", str(REPO / "tests" / "js" / "hello.test.mjs")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 4" in result.stdout, result.stdout


def test_file_outputs_are_served_by_the_stream_function_from_s3(sim):
    client = sim.replicate()
    outputs = list(client.run("admin/frames", input={"count": 2}))
    assert len(outputs) == 2
    # http: URLs (replicate 1.0.7 wraps only https: ones in FileOutput): the platform's signed URLs
    # on the stream function's Function URL (not API Gateway, not an S3 presign)
    assert all(
        url.startswith("http://127.0.0.1:") and not url.startswith(sim.url) and "/v1/blobs/" in url for url in outputs
    ), outputs
    assert all("X-Amz-" not in url for url in outputs), outputs
    assert [httpx.get(url, timeout=60).content for url in outputs] == [b"frame 0\n", b"frame 1\n"]


def test_streams_through_the_stream_function_and_secrets_through_the_runner_task(sim):
    """The stream function opens the token the API made (both read the SigningKeys secret); the
    runner task opens the secret input the API sealed; the table holds only the mask."""
    import hashlib

    client = sim.replicate()
    prediction = client.models.predictions.create(model="admin/frames", input={"count": 2})
    stream_url = prediction.urls["stream"]
    assert "/v1/files/streams/" in stream_url and prediction.id not in stream_url
    files = [
        e.data
        for e in client.stream("admin/frames", input={"count": 2})
        if getattr(e.event, "value", e.event) == "output"
    ]
    assert len(files) == 2 and all(prediction.id not in f for f in files)
    prediction.wait()
    assert all(prediction.id not in url for url in prediction.output)

    plain = "sk-sim-secret-0123456789abcdef"
    out = client.run("admin/secret", input={"api_key": plain})
    assert out == f"hi: len={len(plain)} sha256={hashlib.sha256(plain.encode()).hexdigest()}"
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as api:
        listed = api.get("/v1/predictions").text
    assert plain not in listed and "**********" in listed


def test_web_ui_pages_and_their_assets_load_under_the_stage_prefix(sim):
    """Before: 500 (no jinja2 in the Lambda asset), then every link without `/api` (403)."""
    import re

    with httpx.Client(base_url=sim.url.rsplit("/", 1)[0], timeout=60) as client:
        for page in ("/api/", "/api/admin/hello", "/api/signin"):
            r = client.get(page)
            assert r.status_code == 200, (page, r.status_code, r.text[:300])
            links = set(re.findall(r'(?:href|src|action)="(/[^"]*)"', r.text))
            assert links, page
            assert all(link.startswith("/api/") for link in links), (page, sorted(links))
            for asset in (link for link in links if "/static/" in link):
                assert client.get(asset).status_code == 200, asset


def test_streams_come_through_the_function_url(sim):
    """urls.stream points at the stream function's Function URL (not API Gateway, which buffers)."""
    client = sim.replicate()
    events = list(client.stream("admin/tokens", input={"text": "alpha beta gamma", "delay": 0.2}))
    kinds = [getattr(e.event, "value", e.event) for e in events]
    assert [str(e) for e, k in zip(events, kinds, strict=True) if k == "output"] == ["alpha ", "beta ", "gamma"]
    assert kinds[-1] == "done"
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        body = c.post(f"{sim.url}/v1/models/admin/tokens/predictions", json={"input": {"text": "x"}}).json()
    stream = body["urls"]["stream"]
    assert stream.startswith("http://127.0.0.1:") and not stream.startswith(sim.url), stream


def test_output_urls_live_their_hour_by_the_platforms_clock(sim):
    """Output URLs are signed by the platform (SigningKeys), not presigned by a Lambda role whose
    session may end first: fetched 59 minutes after they were made they work, at 61 they are a
    clear 404. The functions' clock is moved through COGPLANE_CLOCK_FILE. (Before: S3 presigns,
    which moto serves at any age.) Last in this module: it moves the deployment's clock."""
    clock = sim.home.parent / "clock"
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as api:
        created = api.post(
            "/v1/models/admin/frames/predictions", json={"input": {"count": 1}}, headers={"Prefer": "wait"}
        ).json()
        for _ in range(240):
            body = api.get(f"/v1/predictions/{created['id']}").json()
            if body["status"] in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.5)
    assert body["status"] == "succeeded", body
    (url,) = body["output"]
    try:
        clock.write_text(str(59 * 60))
        r = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)  # as replicate-python
        assert r.status_code == 200 and r.content == b"frame 0\n", (r.status_code, r.text[:300])
        clock.write_text(str(61 * 60))
        r = httpx.get(url, timeout=60)
        assert r.status_code == 404 and "expired" in r.json()["detail"], (r.status_code, r.text[:300])
    finally:
        clock.write_text("0")
