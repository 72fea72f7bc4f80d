"""The deployed shape, simulated (`make sim-aws`): the real replicate clients (Python 1.0.7, JS
1.4.0) run models through API Gateway -> the packaged API function (Python 3.12) -> DynamoDB/SQS on
moto -> an ECS task (the runner) -> S3 on moto, with `cogplane push` through the same API.

Needs cdk.out synthesized with the staged Lambda asset (`make test` builds both)."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from tests.system.conftest import REPO, TOKEN, SimStack, node_env

pytestmark = [pytest.mark.system, pytest.mark.slow]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    assert (REPO / "cdk.out" / "manifest.json").is_file(), "run `make synth` first (make test does)"
    home = tmp_path_factory.mktemp("sim") / "home"
    s = SimStack(home, env={"COGPLANE_USER": "admin"}).start()
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


def test_file_outputs_are_served_from_s3(sim):
    client = sim.replicate()
    outputs = list(client.run("admin/frames", input={"count": 2}))
    assert len(outputs) == 2
    # http: URLs (replicate 1.0.7 wraps only https: ones in FileOutput): presigned S3 URLs on moto
    assert all(url.startswith("http://127.0.0.1:") and "X-Amz-Signature=" in url for url in outputs), outputs
    assert [httpx.get(url).content for url in outputs] == [b"frame 0\n", b"frame 1\n"]


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
