"""Schemathesis against the app's own OpenAPI, in process (ASGI, no network), on the local
adapters: every operation gets generated (valid and invalid) paths, queries, headers and bodies,
and must answer without a 5xx; every 4xx is problem+json; a refused write stores nothing.

The app reads JSON and multipart bodies itself (one strict parser at the front door), so its
OpenAPI names no request bodies; the bodies the routes read are added here, so that the fuzzer
sends them. Bounded: a fixed number of examples per operation, derandomized (the same cases on
every run, so CI cannot flake on a new seed); about two minutes on two busy cores."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from cogplane.domain.ids import version_id_for
from cogplane.settings import Settings
from cogplane.wiring import build_local
from functions.api.app import create_app
from tests.conftest import HELLO_SCHEMA, make_bundle

pytestmark = pytest.mark.slow  # minutes, not seconds: `make test` (CI) runs it, `make test-fast` does not

TOKEN = "r8_fuzz-token-0123456789abcdef"
BUNDLE = make_bundle({"cog.yaml": "predict: p.py:P\n", "p.py": "x"})
# per operation (~45 of them): ~1 min on two idle cores; FUZZ_EXAMPLES=200 for a longer hunt
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))

_STR = {"type": "string"}
_INPUT = {"type": "object", "properties": {"prompt": _STR, "steps": {"type": "integer"}, "image": _STR}}
_CREATE = {
    "version": _STR,
    "input": _INPUT,
    "webhook": _STR,
    "stream": {"type": "boolean"},
    "webhook_events_filter": {"type": "array", "items": _STR},
}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/predictions"): _CREATE,
    ("post", "/v1/models/{owner}/{name}/predictions"): _CREATE,
    ("post", "/v1/deployments/{owner}/{name}/predictions"): _CREATE,
    ("post", "/v1/models"): {"owner": _STR, "name": _STR, "visibility": _STR, "hardware": _STR, "description": _STR},
    ("patch", "/v1/models/{owner}/{name}"): {"description": _STR, "visibility": _STR, "readme": _STR},
    ("post", "/v1/deployments"): {
        "name": _STR,
        "model": _STR,
        "version": _STR,
        "hardware": _STR,
        "min_instances": {"type": "integer"},
        "max_instances": {"type": "integer"},
    },
    ("patch", "/v1/deployments/{owner}/{name}"): {
        "version": _STR,
        "hardware": _STR,
        "min_instances": {"type": "integer"},
        "max_instances": {"type": "integer"},
    },
}
MULTIPART: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/files"): {
        "content": {"type": "string", "format": "binary"},
        "filename": _STR,
        "type": _STR,
        "metadata": _STR,
    },
    ("post", "/v1/models/{owner}/{name}/versions"): {
        "bundle": {"type": "string", "format": "binary"},
        "schema": _STR,
        "config": _STR,
        "cog_version": _STR,
    },
}
# routes that also take JSON naming an upload (POST /v1/uploads): {"upload": id, ...}
JSON_TOO: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/files"): {"upload": _STR, "filename": _STR, "type": _STR, "metadata": {"type": "object"}},
    ("post", "/v1/models/{owner}/{name}/versions"): {
        "upload": _STR,
        "schema": {"type": "object"},
        "config": {"type": "object"},
        "cog_version": _STR,
    },
}
BODIES[("post", "/v1/uploads")] = {"purpose": _STR, "size": {"type": "integer"}}
HEADERS = {"Cancel-After": _STR, "Prefer": _STR}  # the headers a create reads


def with_bodies(spec: dict[str, Any], examples: dict[str, str]) -> dict[str, Any]:
    """The app's OpenAPI plus the request bodies and headers its routes read, and real values as
    path examples (so that generated requests also reach existing things, not only 404s)."""
    spec = copy.deepcopy(spec)
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if (method, path) in BODIES:
                schema = {"type": "object", "properties": BODIES[method, path]}
                op["requestBody"] = {"content": {"application/json": {"schema": schema}}}
                if path.endswith("/predictions"):
                    op.setdefault("parameters", []).extend(
                        {"name": n, "in": "header", "required": False, "schema": s} for n, s in HEADERS.items()
                    )
            elif (method, path) in MULTIPART:
                schema = {"type": "object", "properties": MULTIPART[method, path]}
                op["requestBody"] = {"content": {"multipart/form-data": {"schema": schema}}}
                if (method, path) in JSON_TOO:
                    uploaded = {"type": "object", "properties": JSON_TOO[method, path]}
                    op["requestBody"]["content"]["application/json"] = {"schema": uploaded}
            elif method in ("post", "patch", "put") and "requestBody" not in op:
                op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in examples and "stream" not in path:
                    param["example"] = examples[param["name"]]
    return spec


def _stored(services) -> dict[str, Any]:
    state, data = services.state, services.settings.blob_root / "data"
    model = state.get_model("alice", "hello")
    return {
        "predictions": len(state.list_predictions("alice", limit=1000).items),
        "versions": len(state.list_versions("alice", "hello", limit=1000).items),
        "latest": model.latest_version_id if model else None,
        "files": len(state.list_files("alice", limit=1000).items),
        "blobs": sorted(p.as_posix() for p in data.rglob("*") if p.is_file()),
    }


def _spec_of_the_app() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:  # the OpenAPI does not depend on the state
        return create_app(build_local(Settings(home=home))).openapi()


VERSION_ID = version_id_for(BUNDLE)  # content-addressed: known before the push
schema = schemathesis.openapi.from_dict(
    with_bodies(_spec_of_the_app(), {"owner": "alice", "name": "hello", "version_id": VERSION_ID})
)


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    """The app the cases are sent to: alice with a public model, a version, a prediction, a file."""
    settings_ = Settings(home=tmp_path_factory.mktemp("fuzz") / "home", public_url="https://cogplane.test")
    services = build_local(settings_, base_url=settings_.public_url)
    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", TOKEN)
    app = create_app(services)
    client = TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})
    client.post("/v1/models", json={"owner": "alice", "name": "hello", "visibility": "public"})
    r = client.post(
        "/v1/models/alice/hello/versions",
        files={"bundle": ("b.tar.gz", BUNDLE, "application/gzip")},
        data={"schema": json.dumps(HELLO_SCHEMA), "config": "{}"},
    )
    assert r.json()["id"] == VERSION_ID, r.text
    assert client.post("/v1/predictions", json={"version": VERSION_ID, "input": {"prompt": "x"}}).status_code == 201
    assert client.post("/v1/files", files={"content": ("a.txt", b"hi", "text/plain")}).status_code == 201
    return services, app


@schemathesis.check
def problem_json(ctx, response, case) -> bool | None:
    """Every 4xx is problem+json with its status in the body (docs/replicate-api.md §0)."""
    if 400 <= response.status_code < 500 and response.status_code != 405:
        assert response.headers.get("content-type", [""])[0].startswith("application/problem+json"), (
            response.headers.get("content-type")
        )
        if case.method.upper() != "HEAD":  # a HEAD answer has the headers of a GET's, no body
            assert json.loads(response.content)["status"] == response.status_code
    return None


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_no_input_gets_a_5xx_and_a_refused_write_stores_nothing(case, fuzz_target):
    services, app = fuzz_target
    before = _stored(services)
    response = case.call_and_validate(
        app=app, headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error, problem_json]
    )
    if response.status_code >= 400:
        assert _stored(services) == before, (case.method, case.path, response.status_code)
