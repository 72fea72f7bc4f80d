"""Models and versions through the API."""

from __future__ import annotations

import replicate.model as rm
import replicate.version as rv

from tests.api.conftest import push


def test_push_is_idempotent_for_identical_content(client, schema):
    first = push(client, "alice", "hello", schema)
    second = push(client, "alice", "hello", schema)
    assert first["id"] == second["id"] and len(first["id"]) == 64
    versions = client.get("/v1/models/alice/hello/versions").json()["results"]
    assert [v["id"] for v in versions] == [first["id"]]
    rv.Version(**versions[0])


def test_model_shape_parses_under_client_models(client, schema):
    v = push(client, "alice", "hello", schema, visibility="public")
    body = client.get("/v1/models/alice/hello").json()
    model = rm.Model(**body)
    assert model.latest_version.id == v["id"]
    assert body["url"] == "https://cogplane.test/alice/hello"


def test_create_model_rules(client, bob):
    assert client.post("/v1/models", json={"owner": "bob", "name": "x"}).status_code == 403
    assert client.post("/v1/models", json={"owner": "alice", "name": "Bad Name"}).status_code == 422
    assert client.post("/v1/models", json={"owner": "alice", "name": "m", "hardware": "tpu"}).status_code == 422
    assert client.post("/v1/models", json={"owner": "alice", "name": "m"}).status_code == 201
    assert client.post("/v1/models", json={"owner": "alice", "name": "m"}).status_code == 409


def test_delete_model_only_without_versions(client, schema):
    v = push(client, "alice", "hello", schema)
    assert client.delete("/v1/models/alice/hello").status_code == 409
    assert client.delete(f"/v1/models/alice/hello/versions/{v['id']}").status_code == 202
    assert client.get(f"/v1/models/alice/hello/versions/{v['id']}").status_code == 404
    assert client.delete("/v1/models/alice/hello").status_code == 204
    assert client.get("/v1/models/alice/hello").status_code == 404


def test_list_and_search_public_models(client, bob, schema):
    push(client, "alice", "public-one", schema, visibility="public")
    push(client, "alice", "secret-one", schema, visibility="private")
    names = [m["name"] for m in bob.get("/v1/models").json()["results"]]
    assert names == ["public-one"]
    raw = bob.request("QUERY", "/v1/models", content=b"public", headers={"Content-Type": "text/plain"})
    quoted = bob.request("QUERY", "/v1/models", content=b'"public"', headers={"Content-Type": "text/plain"})
    assert [m["name"] for m in raw.json()["results"]] == ["public-one"]
    assert [m["name"] for m in quoted.json()["results"]] == ["public-one"]
    assert bob.request("QUERY", "/v1/models", content=b"secret").json()["results"] == []


def test_hardware_is_a_bare_array_and_account(client):
    assert client.get("/v1/hardware").json() == [{"sku": "cpu", "name": "CPU"}]
    assert client.get("/v1/account").json()["username"] == "alice"
    assert client.get("/v1/webhooks/default/secret").json()["key"].startswith("whsec_")


def test_push_requires_schema_with_input_and_output(client):
    import json

    from tests.conftest import make_bundle

    client.post("/v1/models", json={"owner": "alice", "name": "m"})
    r = client.post(
        "/v1/models/alice/m/versions",
        files={"bundle": ("b.tar.gz", make_bundle({"a": "b"}), "application/gzip")},
        data={"schema": json.dumps({"components": {}}), "config": "{}"},
    )
    assert r.status_code == 422
