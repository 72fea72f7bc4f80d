"""The compatibility suite: the real replicate 1.0.7 (Python) and 1.4.0 (JS) clients against the
single-machine stack (HTTPS with its own CA), through docs/replicate-api.md §7 items 1-7, 9 and 10,
with one test per client quirk of §5 (each test names the quirk it pins down).

Fixture models (tests/fixtures/system_models): `tokens` (ConcatenateIterator[str]), `frames`
(Iterator[Path]), `filecat` (Path in, its sha256 out, optionally a copy out), `sleeper`, `raises`.
The JS half lives in tests/js/compat.test.mjs and runs through node's test runner here.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import time

import pytest
import replicate as replicate_pkg
from replicate.exceptions import ModelError, ReplicateError
from replicate.pagination import paginate

from tests.system.conftest import REPO, TOKEN, node_env, wait_for

pytestmark = pytest.mark.system

MODELS = ("tokens", "frames", "filecat", "sleeper", "raises")


@pytest.fixture(scope="module")
def compat(stack):
    """The fixture models pushed as local/compat-<name>; returns {name: version id}."""
    versions = {}
    for name in MODELS:
        folder = REPO / "tests" / "fixtures" / "system_models" / name
        versions[name] = stack.cli("push", str(folder), f"local/compat-{name}", "--public").stdout.strip()
    return versions


def recording(stack, **kwargs):
    """A Python client that records (method, path) of every request it sends (the API's paths
    without the stage prefix of the simulated API Gateway)."""
    seen: list[tuple[str, str]] = []
    prefix = stack.path_prefix

    def record(request):
        path = request.url.path
        seen.append((request.method, path[len(prefix) :] if prefix and path.startswith(prefix + "/") else path))

    client = stack.replicate(event_hooks={"request": [record]}, **kwargs)
    return client, seen


def read(stack, value) -> bytes:
    """An output file's bytes: a FileOutput over HTTPS (both clients wrap only https: URLs, so the
    plain-HTTP simulation gives the URL string, fetched here without auth)."""
    if hasattr(value, "read"):
        return value.read()
    assert isinstance(value, str) and not stack.tls, value
    with stack.anon() as anon:
        return anon.get(value).content


def url_of(value) -> str:
    return value if isinstance(value, str) else value.url


def kind(event) -> str:
    """A Python ServerSentEvent's name (replicate 1.0.7 keeps it as a plain Enum member)."""
    return getattr(event.event, "value", event.event)


def polls(seen, prediction_id: str | None = None) -> int:
    return sum(
        1
        for m, p in seen
        if m == "GET" and p.startswith("/v1/predictions/") and (prediction_id is None or p.endswith(prediction_id))
    )


# --- 1. create + shape --------------------------------------------------------------------------


def test_create_shapes_parse_under_the_python_models(stack, compat):
    client = stack.replicate()
    version = compat["sleeper"]
    by_id = client.predictions.create(version=version, input={"seconds": 0})
    by_ref = client.predictions.create(version=f"local/compat-sleeper:{version}", input={"seconds": 0})
    by_model = client.models.predictions.create(model="local/compat-sleeper", input={"seconds": 0})
    for p in (by_id, by_ref, by_model):  # parsed by replicate's pydantic Prediction: model/version non-null
        assert p.model == "local/compat-sleeper" and p.version == version
        assert p.status == "starting" and p.error is None and p.logs == ""
        assert p.urls["get"] == f"{stack.url}/v1/predictions/{p.id}"
        assert p.urls["cancel"].startswith(stack.url) and p.urls["web"].startswith(stack.url)
        assert None not in p.urls.values()  # quirk: Python rejects nulls inside urls
        assert "stream" not in p.urls  # not an iterator model, no stream asked for
    with stack.client() as c:
        raw = c.post("/v1/predictions", json={"version": version, "input": {"seconds": 0}})
        assert raw.status_code == 201 and raw.headers["ratelimit-remaining"] and raw.headers["ratelimit-reset"]


# --- 2. sync contract ---------------------------------------------------------------------------


def test_run_that_finishes_inside_the_wait_needs_no_poll(stack):
    client, seen = recording(stack)
    assert client.run("examples/hello", input={"prompt": "sync"}) == "hello sync"
    creates = [p for m, p in seen if m == "POST"]
    assert creates == ["/v1/models/examples/hello/predictions"]
    assert polls(seen) == 0  # quirk: a non-`starting` blocking answer is final, never polled


def test_run_whose_wait_runs_out_gets_starting_and_polls(stack, compat):
    client, seen = recording(stack)
    # a warm runner first: a cold boot inside the create would outlast the client's read timeout
    wait = stack.short_wait
    assert stack.replicate().run("local/compat-sleeper", input={"seconds": 0, "tag": "w"}) == "slept 0 w"
    seconds = wait + 0.5
    assert client.run("local/compat-sleeper", input={"seconds": seconds, "tag": "p"}, wait=wait) == f"slept {seconds} p"
    assert polls(seen) >= 1
    with stack.client() as c:  # the raw contract behind it
        r = c.post(
            "/v1/models/local/compat-sleeper/predictions", json={"input": {"seconds": 3}}, headers={"Prefer": "wait=1"}
        )
        body = r.json()
        assert r.status_code == 201 and r.headers["preference-applied"] == "wait=1"
        assert r.headers["location"] == body["urls"]["get"]
        assert body["status"] == "starting" and body["output"] is None  # never `processing` + partial output
        done = c.post(
            "/v1/models/examples/hello/predictions", json={"input": {"prompt": "w"}}, headers={"Prefer": "wait"}
        )
        assert done.json()["status"] == "succeeded" and done.headers["preference-applied"] == "wait"


# --- 3. lifecycle and polling -------------------------------------------------------------------


def test_lifecycle_failure_and_cancel(stack, compat):
    client = stack.replicate()
    p = client.models.predictions.create(model="local/compat-sleeper", input={"seconds": 0.3})
    p.wait()
    assert p.status == "succeeded" and p.started_at and p.completed_at
    assert p.metrics["predict_time"] > 0 and p.metrics["total_time"] >= p.metrics["predict_time"]
    with pytest.raises(ModelError) as info:
        client.run("local/compat-raises", input={"message": "compat failure"})
    assert isinstance(info.value.prediction.error, str) and "compat failure" in info.value.prediction.error
    long = client.models.predictions.create(model="local/compat-sleeper", input={"seconds": 60})
    wait_for(lambda: client.predictions.get(long.id).status == "processing", timeout=120)
    long.cancel()
    assert long.status == "canceled"
    time.sleep(0.5)
    assert client.predictions.get(long.id).status == "canceled"  # stable
    assert client.predictions.cancel(long.id).status == "canceled"  # cancel of a terminal one: unchanged


# --- 4. pagination ------------------------------------------------------------------------------


def test_paginate_walks_every_page(stack, compat):
    client = stack.replicate()
    made = {client.predictions.create(version=compat["sleeper"], input={"seconds": 0}).id for _ in range(7)}
    pages = list(paginate(client.predictions.list))  # the stack lists 5 per page
    assert len(pages) >= 2
    ids = [p.id for page in pages for p in page.results]
    assert made <= set(ids) and len(ids) == len(set(ids))
    assert all(page.next is None or page.next.startswith(f"{stack.url}/v1/predictions?") for page in pages)


# --- 5. SSE -------------------------------------------------------------------------------------


def test_python_stream_reproduces_the_output_piece_by_piece(stack, compat):
    client, seen = recording(stack)
    events = list(client.stream("local/compat-tokens", input={"text": "alpha beta gamma", "delay": 0.2}))
    outputs = [str(e) for e in events if kind(e) == "output"]
    assert outputs == ["alpha ", "beta ", "gamma"]
    assert kind(events[-1]) == "done" and events[-1].data == "{}"
    assert any(kind(e) == "logs" and "token 0" in e.data for e in events)
    # Python's stream() sends stream: true and reads urls.stream with its bearer header
    assert any(p.startswith("/v1/streams/") for m, p in seen if m == "GET")


def test_stream_contract_on_the_wire(stack, compat):
    with stack.client() as c:
        body = c.post(
            "/v1/models/local/compat-raises/predictions",
            json={"input": {"message": "streamed failure"}, "stream": True},
        ).json()
        assert body["urls"]["stream"].startswith(f"{stack.stream_base}/v1/streams/")
        assert body["id"] not in body["urls"]["stream"]
    with stack.anon() as anon:  # JS sends no Authorization header
        with anon.stream("GET", body["urls"]["stream"], headers={"Accept": "text/event-stream"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            text = r.read().decode()
    assert text.startswith(": hi\n\n")
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    names = [b.split("\n")[0].removeprefix("event: ") for b in events]
    assert all("\nid: " in b for b in events)
    assert set(names) <= {"output", "logs", "error", "done"} and names[-2:] == ["error", "done"]
    assert json.loads(events[-2].split("data: ", 1)[1])["detail"].endswith("streamed failure")
    assert json.loads(events[-1].split("data: ", 1)[1]) == {"reason": "error"}
    seen = []
    with pytest.raises(RuntimeError, match="failed mid-stream"):  # an error event raises in Python
        failing = {"text": "a b", "fail": "failed mid-stream"}
        for event in stack.replicate().stream("local/compat-tokens", input=failing):
            seen.append(str(event))
    assert "a " in seen  # what came before the failure was streamed


def test_file_iterator_streams_under_v1_files_and_python_makes_file_outputs(stack, compat):
    client = stack.replicate()
    prediction = client.models.predictions.create(model="local/compat-frames", input={"count": 2})
    assert prediction.urls["stream"].startswith(f"{stack.stream_base}/v1/files/streams/")
    assert prediction.id not in prediction.urls["stream"]
    files = [e.data for e in client.stream("local/compat-frames", input={"count": 2}) if kind(e) == "output"]
    assert [read(stack, f) for f in files] == [b"frame 0\n", b"frame 1\n"]


# --- 6. file outputs ----------------------------------------------------------------------------


def test_file_outputs_are_file_output_with_the_bytes_the_model_wrote(stack, compat):
    client = stack.replicate()
    out = client.run("local/compat-frames", input={"count": 3})
    if stack.tls:  # replicate 1.0.7 wraps https: URLs only (the simulation is plain HTTP)
        assert all(isinstance(f, replicate_pkg.helpers.FileOutput) for f in out)
    assert [read(stack, f) for f in out] == [b"frame 0\n", b"frame 1\n", b"frame 2\n"]  # with the bearer (Python)
    assert all(url_of(f).startswith(f"{stack.stream_base}/v1/blobs/") for f in out)
    with stack.anon() as anon:  # and without auth (JS), and with a bearer that is not ours
        assert anon.get(url_of(out[0])).content == b"frame 0\n"
        assert anon.get(url_of(out[0]), headers={"Authorization": "Bearer whatever"}).content == b"frame 0\n"
        assert anon.get(url_of(out[0]).replace("signature=", "signature=x")).status_code == 404
    # a data: output (cog inlines files nested in dicts) decodes too
    data = b"\x00\x01 nested"
    nested = client.run("local/compat-filecat", input={"file": io.BytesIO(data), "copy": True})
    assert read(stack, nested["copy"]) == data


@pytest.mark.slow
def test_deterministic_example_models_give_the_same_bytes_twice(stack):
    client = stack.replicate()
    first = read(stack, client.run("examples/tts", input={"text": "Same bytes every time."}))
    second = read(stack, client.run("examples/tts", input={"text": "Same bytes every time."}))
    assert first[:4] == b"RIFF" and first == second
    with open(REPO / "examples" / "style-transfer" / "input.png", "rb") as image:
        a = read(stack, client.run("examples/style-transfer", input={"image": image, "style": 1, "max_size": 64}))
    with open(REPO / "examples" / "style-transfer" / "input.png", "rb") as image:
        b = read(stack, client.run("examples/style-transfer", input={"image": image, "style": 1, "max_size": 64}))
    assert a[:8] == b"\x89PNG\r\n\x1a\n" and a == b


# --- 7. files API -------------------------------------------------------------------------------


def test_files_api_and_a_file_as_an_input(stack, compat):
    client = stack.replicate()
    data = b"compat file bytes\n" * 50
    # quirk: Python sends `metadata` as an ordinary form field holding JSON
    f = client.files.create(io.BytesIO(data), metadata={"purpose": "compat"})
    assert f.size == len(data) and f.etag == hashlib.md5(data).hexdigest() and f.metadata == {"purpose": "compat"}
    assert f.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.files.get(f.id).id == f.id
    assert f.id in [x.id for x in client.files.list()]
    out = client.run("local/compat-filecat", input={"file": f.urls["get"]})
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    # both clients upload file inputs automatically and pass urls.get
    auto = client.run("local/compat-filecat", input={"file": io.BytesIO(b"auto upload")})
    assert auto["sha256"] == hashlib.sha256(b"auto upload").hexdigest()
    client.files.delete(f.id)
    with pytest.raises(ReplicateError) as info:
        client.files.get(f.id)
    assert info.value.status == 404


def test_http_inputs_are_fetched_server_side_and_private_addresses_refused(stack, compat):
    client = stack.replicate()
    out = client.run("local/compat-frames", input={"count": 1})
    # an https output URL of this stack (loopback: allowed on one machine) as the next model's input
    chained = client.run("local/compat-filecat", input={"file": url_of(out[0])})
    assert chained["sha256"] == hashlib.sha256(b"frame 0\n").hexdigest()
    with pytest.raises(ReplicateError) as info:
        client.run("local/compat-filecat", input={"file": "http://169.254.169.254/latest/meta-data/"})
    assert info.value.status == 422 and "file" in info.value.detail


# --- 9. errors and auth -------------------------------------------------------------------------


def test_errors_and_auth(stack, compat):
    with pytest.raises(ReplicateError) as info:
        list(stack.replicate(token="r8_wrong-token-000000000000").predictions.list())
    assert info.value.status == 401 and info.value.title == "Unauthenticated"
    with stack.client(None, headers={"Authorization": f"Token {TOKEN}"}) as legacy:  # quirk: legacy scheme
        assert legacy.get("/v1/account").json()["username"] == "local"
    with stack.anon() as anon:
        r = anon.get("/v1/predictions")
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    with pytest.raises(ReplicateError) as info:
        stack.replicate().predictions.create(version="e" * 64, input={})
    assert info.value.status == 422 and info.value.title == "Invalid version or not permitted"
    with pytest.raises(ReplicateError) as info:
        stack.replicate().run("local/compat-sleeper", input={"seconds": "long"})
    assert info.value.status == 422 and "seconds" in info.value.detail


# --- 10. model/version plumbing -----------------------------------------------------------------


def test_versioned_run_looks_the_version_up_and_yields_iterator_output(stack, compat):
    client, seen = recording(stack)
    version = compat["tokens"]
    output = client.run(f"local/compat-tokens:{version}", input={"text": "x y z", "delay": 0.3}, wait=False)
    assert ("GET", f"/v1/models/local/compat-tokens/versions/{version}") in seen
    pieces = list(output)  # an iterator model: a generator yielding items as they arrive
    assert pieces == ["x ", "y ", "z"]
    assert (
        client.models.get("local/compat-tokens")
        .versions.get(version)
        .openapi_schema["components"]["schemas"]["Output"]["x-cog-array-type"]
        == "iterator"
    )


def test_search_collections_account_hardware_parse(stack, compat):
    client = stack.replicate()
    found = client.models.search("compat-tokens")  # QUERY /v1/models with a raw text body (over uvicorn)
    assert [m.name for m in found.results] == ["compat-tokens"]
    with stack.client() as c:
        quoted = c.request("QUERY", "/v1/models", content=b'"compat-tokens"', headers={"Content-Type": "text/plain"})
        assert [m["name"] for m in quoted.json()["results"]] == ["compat-tokens"]  # JS JSON-quotes it
    collections = client.collections.list()
    assert "examples" in [c.slug for c in collections.results]
    examples = client.collections.get("examples")
    assert examples.models and all(m.owner == "examples" for m in examples.models)
    assert client.accounts.current().username == "local"
    assert [h.sku for h in client.hardware.list()] == stack.hardware
    model = client.models.get("examples/hello")
    assert model.default_example is None or model.default_example.id
    assert client.models.get("local/compat-tokens").url == f"{stack.url}/local/compat-tokens"


def test_version_delete_answers_202_which_python_reports_as_false(stack, model_copy):
    """Quirk: Replicate answers 202; Python 1.0.7 returns `status_code == 204`, i.e. False."""
    version = stack.cli("push", str(model_copy("sleeper")), "local/compat-delete").stdout.strip()
    client = stack.replicate()
    assert client.models.get("local/compat-delete").versions.delete(version) is False
    with stack.client() as c:
        assert c.get(f"/v1/models/local/compat-delete/versions/{version}").status_code == 404


def test_environment_only_configuration_as_the_readme_says(stack, monkeypatch):
    """REPLICATE_BASE_URL without /v1, the token from the environment, trust via SSL_CERT_FILE."""
    monkeypatch.setenv("REPLICATE_BASE_URL", stack.url)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    if stack.tls:
        monkeypatch.setenv("SSL_CERT_FILE", str(stack.ca))
    assert replicate_pkg.Client().run("examples/hello", input={"prompt": "env"}) == "hello env"


# --- the JS client ------------------------------------------------------------------------------


def test_js_client_compat_suite(stack, compat):
    node = shutil.which("node")
    assert node, "node is required for the JS client tests"
    assert (REPO / "node_modules" / "replicate").is_dir(), "run `make install` (npm install) first"
    env = node_env(
        stack,
        COMPAT_VERSIONS=json.dumps(compat),
        COGPLANE_STREAM_BASE=stack.stream_base,
        COGPLANE_HARDWARE=json.dumps(stack.hardware),
    )
    result = subprocess.run(
        [node, "--test", str(REPO / "tests" / "js" / "compat.test.mjs")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout, result.stdout


@pytest.mark.slow
def test_whisper_streams_its_segments_in_both_clients(stack):
    """examples/whisper is an `Iterator[str]` model: every prediction carries urls.stream."""
    client = stack.replicate()
    with open(REPO / "examples" / "whisper" / "speech.wav", "rb") as audio:
        events = list(client.stream("examples/whisper", input={"audio": audio}))
    text = "".join(str(e) for e in events if kind(e) == "output")
    assert text.strip() == "Hello from a self-hosted model server."
    assert kind(events[-1]) == "done"
    node = shutil.which("node")
    assert node, "node is required for the JS client tests"
    result = subprocess.run(
        [node, "--test", str(REPO / "tests" / "js" / "whisper.test.mjs")],
        cwd=REPO,
        env=node_env(stack, WHISPER_AUDIO=str(REPO / "examples" / "whisper" / "speech.wav")),
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert result.returncode == 0 and "# fail 0" in result.stdout, result.stdout + result.stderr
