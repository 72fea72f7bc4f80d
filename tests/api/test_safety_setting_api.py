"""The safety checker's settings through the API: the model's `safety_checker` (owner only), a
create request's `disable_safety_checker`, and the `safety` field of checked predictions."""

from __future__ import annotations

import replicate.model as rm
import replicate.prediction as rp

from tests.api.conftest import push


def test_safety_checker_is_off_by_default_and_only_the_owner_changes_it(client, bob, schema):
    push(client, "alice", "hello", schema, visibility="public")
    body = client.get("/v1/models/alice/hello").json()
    assert body["safety_checker"] == "off"
    rm.Model(**body)  # replicate 1.0.7's Model parses it with the extension field
    for level in ("web", "all", "off"):
        r = client.patch("/v1/models/alice/hello", json={"safety_checker": level})
        assert r.status_code == 200 and r.json()["safety_checker"] == level
    bad = client.patch("/v1/models/alice/hello", json={"safety_checker": "sometimes"})
    assert bad.status_code == 422 and bad.json()["detail"] == "`safety_checker` must be `off`, `web` or `all`."
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert client.patch("/v1/models/alice/hello", json={"safety_checker": None}).status_code == 422
    assert bob.patch("/v1/models/alice/hello", json={"safety_checker": "all"}).status_code == 403
    assert client.get("/v1/models/alice/hello").json()["safety_checker"] == "off"


def create(client, version, **extra):
    return client.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}, **extra})


def test_which_predictions_are_checked(client, services, version):
    def safety(**extra):
        r = create(client, version, **extra)
        assert r.status_code == 201, r.text
        rp.Prediction(**r.json())  # replicate 1.0.7's Prediction ignores the extension field
        return r.json().get("safety"), services.state.get_prediction(r.json()["id"]).safety

    assert safety() == (None, None)  # off by default
    assert safety(disable_safety_checker=True) == (None, None)
    client.patch("/v1/models/alice/hello", json={"safety_checker": "web"})
    assert safety() == (None, None)  # `web`: API predictions are not checked
    client.patch("/v1/models/alice/hello", json={"safety_checker": "all"})
    pending = {"checked": False, "flagged": []}
    assert safety() == (pending, pending)
    assert safety(disable_safety_checker=False) == (pending, pending)
    assert safety(disable_safety_checker=True) == (None, None)


def test_web_predictions_are_checked_with_web_and_all(services, version):
    from cogplane.services.predictions import needs_safety_check

    model = services.state.get_model("alice", "hello")
    assert not needs_safety_check(model, "web", False)
    for level in ("web", "all"):
        model = model.replace(safety_checker=level)
        assert needs_safety_check(model, "web", False) and needs_safety_check(model, "web", True)
    assert not needs_safety_check(model.replace(safety_checker="web"), "api", False)


def test_disable_safety_checker_must_be_a_boolean_and_nothing_is_stored(client, services, version):
    before = services.state.list_predictions(
        "alice", created_after=None, created_before=None, cursor=None, limit=100
    ).items
    r = create(client, version, disable_safety_checker="yes")
    assert r.status_code == 422
    assert r.json()["detail"] == "`disable_safety_checker` must be a boolean."
    after = services.state.list_predictions(
        "alice", created_after=None, created_before=None, cursor=None, limit=100
    ).items
    assert len(after) == len(before)
