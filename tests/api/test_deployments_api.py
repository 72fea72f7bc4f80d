"""The deployments API through TestClient, checked against replicate 1.0.7's own models."""

from __future__ import annotations

import pytest
import replicate.deployment as rd
import replicate.prediction as rp

from tests.api.conftest import push


def body(version_id, **changes):
    base = {
        "name": "my-app",
        "model": "alice/hello",
        "version": version_id,
        "hardware": "cpu",
        "min_instances": 0,
        "max_instances": 2,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def pool(name, version_id, owner="alice"):
    return f"d-{owner}.{name}.{version_id}"


def parse(obj):
    """replicate 1.0.7 rejects a created_by without `name`, a missing configuration, ..."""
    return rd.Deployment(**obj)


@pytest.fixture
def second_version(client, schema):
    files = {"cog.yaml": "predict: predict.py:Predictor\n", "predict.py": "y = 2"}
    return push(client, "alice", "hello", schema, files=files)


@pytest.fixture
def deployment(client, version):
    r = client.post("/v1/deployments", json=body(version["id"]))
    assert r.status_code == 201, r.text
    return r.json()


def test_create_returns_201_and_a_client_parsable_deployment(client, version, deployment):
    parsed = parse(deployment)
    assert parsed.id == "alice/my-app"
    release = parsed.current_release
    assert release.number == 1 and release.model == "alice/hello" and release.version == version["id"]
    assert release.configuration.hardware == "cpu"
    assert (release.configuration.min_instances, release.configuration.max_instances) == (0, 2)
    assert release.created_by.username == "alice" and release.created_by.name == "alice"
    assert deployment["current_release"]["created_by"]["type"] == "user"
    assert set(deployment["current_release"]["created_by"]) == {"type", "username", "name", "avatar_url", "github_url"}
    assert deployment["current_release"]["created_at"]


def test_get_and_list_and_delete(client, deployment):
    r = client.get("/v1/deployments/alice/my-app")
    assert r.status_code == 200 and r.json() == deployment
    r = client.get("/v1/deployments")
    assert r.status_code == 200
    assert r.json()["results"] == [deployment] and r.json()["next"] is None
    assert r.json()["previous"] is None
    r = client.delete("/v1/deployments/alice/my-app")
    assert r.status_code == 204 and r.content == b""
    assert client.get("/v1/deployments/alice/my-app").status_code == 404
    assert client.delete("/v1/deployments/alice/my-app").status_code == 404
    assert client.get("/v1/deployments").json()["results"] == []


def test_duplicate_name_is_409(client, version, deployment):
    r = client.post("/v1/deployments", json=body(version["id"]))
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ...}, "name"),
        ({"name": "Bad Name"}, "name"),
        ({"name": "alice/my-app"}, "name"),
        ({"name": "-x"}, "name"),
        ({"model": ...}, "model"),
        ({"model": "hello"}, "model"),
        ({"model": "alice/nope"}, "model"),
        ({"version": ...}, "version"),
        ({"version": "0" * 64}, "version"),
        ({"hardware": ...}, "hardware"),
        ({"hardware": "gpu-h100"}, "hardware"),
        ({"min_instances": ...}, "min_instances"),
        ({"min_instances": -1}, "min_instances"),
        ({"min_instances": 6, "max_instances": 10}, "min_instances"),
        ({"min_instances": "1"}, "min_instances"),
        ({"min_instances": True}, "min_instances"),
        ({"max_instances": ...}, "max_instances"),
        ({"max_instances": 0}, "max_instances"),
        ({"max_instances": 21}, "max_instances"),
        ({"max_instances": 1.5}, "max_instances"),
        ({"min_instances": 3, "max_instances": 2}, "min_instances"),
    ],
)
def test_create_validation_is_422_naming_the_field(client, version, changes, field):
    r = client.post("/v1/deployments", json=body(version["id"], **changes))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert r.json()["status"] == 422 and r.json()["detail"]
    assert client.get("/v1/deployments").json()["results"] == []


def test_bounds_edges_are_accepted(client, version):
    r = client.post("/v1/deployments", json=body(version["id"], name="edge.a", min_instances=5, max_instances=5))
    assert r.status_code == 201, r.text
    r = client.post("/v1/deployments", json=body(version["id"], name="edge_b", min_instances=0, max_instances=20))
    assert r.status_code == 201, r.text
    assert parse(r.json()).current_release.configuration.max_instances == 20


def test_someone_elses_private_model_cannot_be_deployed(bob, version):
    r = bob.post("/v1/deployments", json=body(version["id"]))
    assert r.status_code == 422 and r.json()["field"] == "model"


def test_a_public_model_can_be_deployed_by_anyone_and_bob_owns_it(client, bob, schema):
    v = push(client, "alice", "pub", schema, visibility="public")
    r = bob.post("/v1/deployments", json=body(v["id"], model="alice/pub"))
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == "bob"
    assert r.json()["current_release"]["created_by"]["username"] == "bob"
    assert client.get("/v1/deployments/bob/my-app").status_code == 404
    assert client.get("/v1/deployments").json()["results"] == []
    assert [d["owner"] for d in bob.get("/v1/deployments").json()["results"]] == ["bob"]


def test_strangers_get_404_everywhere(client, bob, deployment):
    assert bob.get("/v1/deployments/alice/my-app").status_code == 404
    assert bob.patch("/v1/deployments/alice/my-app", json={"max_instances": 3}).status_code == 404
    assert bob.delete("/v1/deployments/alice/my-app").status_code == 404
    r = bob.post("/v1/deployments/alice/my-app/predictions", json={"input": {"prompt": "x"}})
    assert r.status_code == 404
    assert bob.get("/v1/deployments").json()["results"] == []
    assert client.get("/v1/deployments/alice/my-app").json() == deployment  # unchanged


def test_unauthenticated_is_401(app, deployment):
    from fastapi.testclient import TestClient

    anon = TestClient(app)
    assert anon.get("/v1/deployments").status_code == 401
    assert anon.get("/v1/deployments/alice/my-app").status_code == 401


def test_list_is_paged_with_absolute_next(client, services, version):
    services.settings.page_size = 2
    for name in ["e", "b", "d", "a", "c"]:
        assert client.post("/v1/deployments", json=body(version["id"], name=name)).status_code == 201
    names, url, pages = [], "/v1/deployments", 0
    while url:
        r = client.get(url)
        assert r.status_code == 200
        page = r.json()
        for d in page["results"]:
            parse(d)
        names += [d["name"] for d in page["results"]]
        url = page["next"]
        if url:
            assert url.startswith("https://cogplane.test/v1/deployments?cursor=")
            url = url.removeprefix("https://cogplane.test")
        pages += 1
    assert names == ["a", "b", "c", "d", "e"] and pages == 3


def test_each_patch_is_a_new_release(client, services, version, second_version, deployment):
    r = client.patch("/v1/deployments/alice/my-app", json={"max_instances": 4})
    assert r.status_code == 200, r.text
    assert r.json()["current_release"]["number"] == 2
    assert r.json()["current_release"]["configuration"]["max_instances"] == 4
    assert r.json()["current_release"]["version"] == version["id"]
    r = client.patch("/v1/deployments/alice/my-app", json={"version": second_version["id"], "min_instances": 1})
    assert r.status_code == 200, r.text
    release = parse(r.json()).current_release
    assert release.number == 3 and release.version == second_version["id"]
    assert (release.configuration.min_instances, release.configuration.max_instances) == (1, 4)
    r = client.patch("/v1/deployments/alice/my-app", json={"hardware": "cpu"})  # same value: still a release
    assert r.json()["current_release"]["number"] == 4
    assert client.get("/v1/deployments/alice/my-app").json()["current_release"]["number"] == 4
    assert services.state.get_deployment("alice", "my-app").release_number == 4


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"version": "f" * 64}, "version"),
        ({"version": None}, "version"),
        ({"hardware": "gpu-x"}, "hardware"),
        ({"min_instances": 6}, "min_instances"),
        ({"max_instances": 0}, "max_instances"),
        ({"min_instances": 3}, "min_instances"),  # above the stored max of 2
        ({"max_instances": 1, "min_instances": 2}, "min_instances"),
        ({"name": "other"}, "name"),
        ({"model": "alice/other"}, "model"),
    ],
)
def test_patch_validation_is_422_and_changes_nothing(client, deployment, patch, field):
    r = client.patch("/v1/deployments/alice/my-app", json=patch)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert client.get("/v1/deployments/alice/my-app").json() == deployment


def test_patch_lowering_max_below_min_names_max(client, version):
    client.post("/v1/deployments", json=body(version["id"], min_instances=2, max_instances=3))
    r = client.patch("/v1/deployments/alice/my-app", json={"max_instances": 1})
    assert r.status_code == 422 and r.json()["field"] == "max_instances"


def test_empty_patch_is_422(client, deployment):
    r = client.patch("/v1/deployments/alice/my-app", json={})
    assert r.status_code == 422
    assert client.get("/v1/deployments/alice/my-app").json()["current_release"]["number"] == 1


def test_deployment_prediction_has_deployment_and_lands_in_the_deployment_pool(client, services, version, deployment):
    r = client.post("/v1/deployments/alice/my-app/predictions", json={"input": {"prompt": "hi"}})
    assert r.status_code == 201, r.text
    p = r.json()
    parsed = rp.Prediction(**p)
    assert parsed.status == "starting"
    assert p["deployment"] == "alice/my-app"
    assert p["model"] == "alice/hello" and p["version"] == version["id"]
    assert r.headers["location"] == p["urls"]["get"]
    assert services.queue.depth(pool("my-app", version["id"])) == 1
    assert services.queue.depth(f"v-{version['id']}") == 0
    stored = services.state.get_prediction(p["id"])
    assert stored.pool == pool("my-app", version["id"]) and stored.deployment == "alice/my-app"
    got = client.get(f"/v1/predictions/{p['id']}").json()
    assert got["deployment"] == "alice/my-app"


def test_deployment_prediction_validates_input(client, services, version, deployment):
    r = client.post("/v1/deployments/alice/my-app/predictions", json={"input": {"steps": 3}})
    assert r.status_code == 422 and r.json()["field"] == "prompt"
    assert services.queue.depth(pool("my-app", version["id"])) == 0


def test_prediction_on_a_missing_deployment_is_404(client, version):
    r = client.post("/v1/deployments/alice/nope/predictions", json={"input": {"prompt": "x"}})
    assert r.status_code == 404


def test_a_new_version_routes_new_predictions_to_a_new_pool(client, services, version, second_version, deployment):
    old_pool, new_pool = pool("my-app", version["id"]), pool("my-app", second_version["id"])
    first = client.post("/v1/deployments/alice/my-app/predictions", json={"input": {"prompt": "a"}}).json()
    r = client.patch("/v1/deployments/alice/my-app", json={"version": second_version["id"]})
    assert r.status_code == 200
    second = client.post("/v1/deployments/alice/my-app/predictions", json={"input": {"prompt": "b"}}).json()
    assert second["version"] == second_version["id"] and second["deployment"] == "alice/my-app"
    assert services.queue.depth(old_pool) == 1  # the old pool keeps its queued work...
    assert services.queue.depth(new_pool) == 1  # ...new work goes to the new version's pool
    assert services.state.get_prediction(first["id"]).pool == old_pool
    assert services.state.get_prediction(first["id"]).status == "starting"  # nothing failed
    assert services.state.get_prediction(second["id"]).pool == new_pool


def test_deployment_names_with_dots_make_pools_that_split_back(client, services, version):
    from cogplane.domain.pools import parse_deployment

    r = client.post("/v1/deployments", json=body(version["id"], name="my.app.v2"))
    assert r.status_code == 201
    p = client.post("/v1/deployments/alice/my.app.v2/predictions", json={"input": {"prompt": "x"}}).json()
    stored = services.state.get_prediction(p["id"])
    assert stored.pool == f"d-alice.my.app.v2.{version['id']}"
    assert parse_deployment(stored.pool) == ("alice", "my.app.v2", version["id"])


def test_hardware_lists_what_deployments_accept(client, version):
    skus = [h["sku"] for h in client.get("/v1/hardware").json()]
    for sku in skus:
        r = client.post("/v1/deployments", json=body(version["id"], name=f"on-{sku}", hardware=sku))
        assert r.status_code == 201, r.text


def test_a_deployment_can_set_its_own_prediction_timeout(client, services, version):
    body = {
        "name": "timed",
        "model": "alice/hello",
        "version": version["id"],
        "hardware": "cpu",
        "min_instances": 0,
        "max_instances": 1,
        "timeout": 90,
    }
    r = client.post("/v1/deployments", json=body)
    assert r.status_code == 201 and r.json()["current_release"]["configuration"]["timeout"] == 90
    p = client.post("/v1/deployments/alice/timed/predictions", json={"input": {"prompt": "x"}}).json()
    assert services.state.get_prediction(p["id"]).timeout == 90
    assert client.patch("/v1/deployments/alice/timed", json={"timeout": 0}).status_code == 422
    assert client.patch("/v1/deployments/alice/timed", json={"timeout": None}).status_code == 200
    p = client.post("/v1/deployments/alice/timed/predictions", json={"input": {"prompt": "x"}}).json()
    assert services.state.get_prediction(p["id"]).timeout == services.settings.prediction_timeout_seconds
