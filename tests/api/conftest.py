from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from functions.api.app import create_app
from tests.conftest import make_bundle

TOKEN = "r8_test-token-0123456789abcdef"
OTHER_TOKEN = "r8_other-token-0123456789abcdef"


@pytest.fixture
def app(services):
    services.accounts.ensure_account("alice")
    services.accounts.issue_token("alice", TOKEN)
    services.accounts.ensure_account("bob")
    services.accounts.issue_token("bob", OTHER_TOKEN)
    return create_app(services)


@pytest.fixture
def client(app):
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def bob(app):
    return TestClient(app, headers={"Authorization": f"Bearer {OTHER_TOKEN}"})


def push(client, owner, name, schema, *, visibility="private", files=None):
    r = client.post("/v1/models", json={"owner": owner, "name": name, "visibility": visibility})
    assert r.status_code in (201, 409), r.text
    bundle = make_bundle(files or {"cog.yaml": "predict: predict.py:Predictor\n", "predict.py": "x"})
    r = client.post(
        f"/v1/models/{owner}/{name}/versions",
        files={"bundle": ("bundle.tar.gz", bundle, "application/gzip")},
        data={"schema": json.dumps(schema), "config": json.dumps({"predict": "predict.py:Predictor"})},
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture
def version(client, schema):
    return push(client, "alice", "hello", schema)


def parse_sse(text: str) -> tuple[list[str], list[dict]]:
    """(comments, events) the way an EventSource reads them: data lines joined with \\n."""
    comments, events, current = [], [], {}
    for line in text.split("\n"):
        if line == "":
            if current:
                current["data"] = "\n".join(current.get("data", []))
                events.append(current)
            current = {}
        elif line.startswith(":"):
            comments.append(line[1:].strip())
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                current.setdefault("data", []).append(value)
            else:
                current[field] = value
    return comments, events


def create_prediction(client, version, **extra):
    r = client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}, **extra})
    assert r.status_code == 201, r.text
    return r.json()
