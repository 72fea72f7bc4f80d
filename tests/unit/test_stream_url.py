"""`urls.stream` follows COGPLANE_STREAM_URL (the deployed stream function), else the API base."""

from __future__ import annotations

from cogplane.domain.entities import Prediction
from cogplane.sealing import StreamTokens
from cogplane.services.presenters import prediction_json
from cogplane.settings import Settings
from cogplane.wiring import build_local
from functions.api.routers.predictions import present
from tests.conftest import HELLO_SCHEMA

API = "https://abc123.execute-api.us-east-1.amazonaws.com/api"
TOKENS = StreamTokens(b"install-secret")
T = TOKENS.token("p1")
STREAMS = "https://xyz789.lambda-url.us-east-1.on.aws"


def _prediction(**extra) -> Prediction:
    return Prediction(
        id="p1",
        owner="alice",
        model="alice/hello",
        version="v1",
        input={},
        created_at="2026-01-01T00:00:00.000000Z",
        status="processing",
        **extra,
    )


def test_stream_url_setting_is_read_from_the_env_and_loses_its_trailing_slash(monkeypatch):
    assert Settings().stream_url == ""
    monkeypatch.setenv("COGPLANE_STREAM_URL", STREAMS + "/")  # a Function URL ends with "/"
    assert Settings().stream_url == STREAMS


def test_prediction_json_stream_link_uses_the_stream_base_and_keeps_both_paths():
    text = prediction_json(_prediction(), API, has_stream=True, stream_base_url=STREAMS, stream_token=TOKENS.token)
    assert text["urls"]["stream"] == f"{STREAMS}/v1/streams/{T}"
    files = prediction_json(
        _prediction(), API, has_stream=True, file_stream=True, stream_base_url=STREAMS + "/", stream_token=TOKENS.token
    )
    assert files["urls"]["stream"] == f"{STREAMS}/v1/files/streams/{T}"  # JS: FileOutput under /v1/files/
    # every other link stays on the API
    assert text["urls"]["get"] == f"{API}/v1/predictions/p1"
    assert text["urls"]["cancel"] == f"{API}/v1/predictions/p1/cancel"


def test_prediction_json_stream_link_defaults_to_the_api_base():
    assert (
        prediction_json(_prediction(stream=True), API, stream_token=TOKENS.token)["urls"]["stream"]
        == f"{API}/v1/streams/{T}"
    )
    assert (
        prediction_json(_prediction(stream=True), API, file_stream=True, stream_token=TOKENS.token)["urls"]["stream"]
        == f"{API}/v1/files/streams/{T}"
    )
    assert "stream" not in prediction_json(_prediction(), API, stream_token=TOKENS.token)["urls"]
    # never a stream URL made of the prediction id
    assert "stream" not in prediction_json(_prediction(stream=True), API)["urls"]


def test_the_api_presenter_reads_the_setting(tmp_path):
    iterator = dict(
        HELLO_SCHEMA,
        components={
            "schemas": {
                **HELLO_SCHEMA["components"]["schemas"],
                "Output": {"type": "array", "items": {"type": "string"}, "x-cog-array-type": "iterator"},
            }
        },
    )
    for stream_url, expected in ((STREAMS + "/", STREAMS), ("", API)):
        services = build_local(Settings(home=tmp_path / "home", public_url=API, stream_url=stream_url))
        body = present(services, _prediction(), API, version=_version(iterator))
        token = services.stream_tokens().token("p1")
        assert body["urls"]["stream"] == f"{expected}/v1/streams/{token}"


def _version(schema):
    from cogplane.domain.entities import Version

    return Version(
        id="v1", owner="alice", name="hello", created_at="2026-01-01T00:00:00.000000Z", openapi_schema=schema
    )


def test_webhook_bodies_carry_the_same_stream_link(tmp_path):
    import json

    from cogplane.services.webhooks import WebhookSender

    services = build_local(Settings(home=tmp_path / "home", public_url=API, stream_url=STREAMS))
    body = json.loads(WebhookSender(services, base_url=API).body_for(_prediction(stream=True)))
    assert body["urls"]["stream"] == f"{STREAMS}/v1/streams/{services.stream_tokens().token('p1')}"
    assert body["urls"]["get"] == f"{API}/v1/predictions/p1"


def test_a_stream_token_is_stable_unguessable_and_names_no_prediction_id():
    token = TOKENS.token("p1")
    assert TOKENS.token("p1") == token  # every GET and webhook shows the same URL
    from cogplane.domain.ids import new_prediction_id

    real = new_prediction_id()
    assert real not in TOKENS.token(real) and TOKENS.prediction_id(TOKENS.token(real)) == real
    assert TOKENS.prediction_id(token) == "p1"
    assert TOKENS.token("p2") != token
    assert StreamTokens(b"another-install").prediction_id(token) is None
    for bad in ("p1", "", "x" * 300, token[:-1] + ("A" if token[-1] != "A" else "B"), "%%%"):
        assert TOKENS.prediction_id(bad) is None
