"""Teams through the API (SQLite adapters): admin routes, org visibility, token revocation,
per-account rate limits, usage. tests/system/test_teams_e2e.py repeats the core with the real
clients against a running stack; tests/contract covers the store methods on both adapter sets."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from cogplane.settings import Settings
from cogplane.wiring import build_local
from functions.api.app import create_app
from tests.api.conftest import push

ROOT = "r8_root-admin-token-0123456789"


@pytest.fixture
def services(tmp_path):
    settings = Settings(
        home=tmp_path / "home",
        public_url="https://cogplane.test",
        rate_create_per_minute=5,
        rate_other_per_minute=1000,
        prices="cpu=0.0001",
    )
    services = build_local(settings, base_url=settings.public_url)
    services.accounts.ensure_account("root", admin=True)
    services.accounts.issue_token("root", ROOT)
    return services


@pytest.fixture
def api(services):
    return TestClient(create_app(services))


def as_(api: TestClient, token: str | None) -> TestClient:
    client = TestClient(api.app)
    if token:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture
def team(api):
    """Users a, b, c; org t owned by a with member b; an org token for t."""
    root = as_(api, ROOT)
    tokens = {}
    for name in ("a", "b", "c"):
        r = root.post("/v1/admin/users", json={"username": name})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["username"] == name and body["type"] == "user" and body["token"].startswith("r8_")
        assert body["token_id"].startswith("tok_")
        tokens[name] = body["token"]
    r = root.post("/v1/admin/orgs", json={"name": "t", "owner": "a"})
    assert r.status_code == 201, r.text
    assert r.json()["type"] == "organization"
    assert root.post("/v1/admin/orgs/t/members", json={"username": "b"}).json()["role"] == "member"
    r = root.post("/v1/admin/tokens", json={"account": "t", "name": "ci"})
    assert r.status_code == 201, r.text
    tokens["t"] = r.json()["token"]
    return {k: as_(api, v) for k, v in tokens.items()} | {"root": root, "anon": as_(api, None), "tokens": tokens}


def test_admin_routes_are_404_to_non_admins(api, team):
    for client in (team["a"], team["t"], team["anon"]):
        for method, path in (
            ("GET", "/v1/admin/users"),
            ("POST", "/v1/admin/users"),
            ("GET", "/v1/admin/usage?account=a"),
            ("DELETE", "/v1/admin/tokens/tok_x"),
        ):
            r = client.request(method, path, json={"username": "zz"})
            assert r.status_code in (404, 401), (method, path, r.status_code)
            if client is not team["anon"]:
                assert r.status_code == 404
    assert team["root"].get("/v1/admin/users").status_code == 200


def test_accounts_orgs_and_tokens(api, team):
    assert team["a"].get("/v1/account").json()["type"] == "user"
    org = team["t"].get("/v1/account").json()
    assert org["type"] == "organization" and org["username"] == "t"
    users = {u["username"]: u for u in team["root"].get("/v1/admin/users").json()["results"]}
    assert set(users) == {"root", "a", "b", "c", "t"}
    assert users["root"]["admin"] is True and users["a"]["admin"] is False
    assert users["a"]["orgs"] == [{"org": "t", "role": "owner"}]
    assert users["b"]["orgs"] == [{"org": "t", "role": "member"}]
    members = team["root"].get("/v1/admin/orgs/t/members").json()["results"]
    assert [(m["username"], m["role"]) for m in members] == [("a", "owner"), ("b", "member")]
    # several named tokens per account, shown once, listed without the secret
    r = team["root"].post("/v1/admin/tokens", json={"account": "a", "name": "laptop"})
    listed = team["root"].get("/v1/admin/tokens", params={"account": "a"}).json()["results"]
    assert [t["name"] for t in listed] == ["default", "laptop"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert listed[0]["last_used_at"] is not None  # a's default token was used above
    assert listed[1]["last_used_at"] is None
    assert as_(api, r.json()["token"]).get("/v1/account").json()["username"] == "a"
    # bad input: clear 4xx, nothing stored
    root = team["root"]
    assert root.post("/v1/admin/users", json={"username": "Bad Name"}).status_code == 400
    assert root.post("/v1/admin/users", json={"username": "a"}).status_code == 409
    assert root.post("/v1/admin/users", json={}).status_code == 422
    assert root.post("/v1/admin/orgs", json={"name": "u", "owner": "nobody"}).status_code == 404
    assert root.post("/v1/admin/orgs", json={"name": "u", "owner": "t"}).status_code == 400
    assert root.post("/v1/admin/orgs/t/members", json={"username": "c", "role": "boss"}).status_code == 400
    assert root.post("/v1/admin/orgs/a/members", json={"username": "c"}).status_code == 400
    assert root.delete("/v1/admin/orgs/t/members/a").status_code == 409  # the last owner stays
    assert root.delete("/v1/admin/orgs/t/members/c").status_code == 404
    assert root.post("/v1/admin/tokens", json={"account": "nobody"}).status_code == 404
    assert root.delete("/v1/admin/tokens/tok_nope").status_code == 404
    assert {u["username"] for u in root.get("/v1/admin/users").json()["results"]} == {"root", "a", "b", "c", "t"}


def test_revoked_token_gets_401_at_once(api, team):
    root = team["root"]
    r = root.post("/v1/admin/tokens", json={"account": "c", "name": "temp"})
    token, token_id = r.json()["token"], r.json()["token_id"]
    client = as_(api, token)
    assert client.get("/v1/account").status_code == 200
    assert root.delete(f"/v1/admin/tokens/{token_id}").json()["revoked"] is True
    r = client.get("/v1/account")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert team["c"].get("/v1/account").status_code == 200  # c's other token still works


def test_org_private_model_is_shared_with_members_only(api, team, schema):
    a, b, c, t, anon = team["a"], team["b"], team["c"], team["t"], team["anon"]
    version = push(a, "t", "secret-model", schema)  # a member pushes to the org
    assert c.post("/v1/models", json={"owner": "t", "name": "x"}).status_code == 403  # not a member
    for client in (a, b, t):
        assert client.get("/v1/models/t/secret-model").status_code == 200
        assert client.get(f"/v1/models/t/secret-model/versions/{version['id']}").status_code == 200
    for client in (c, anon):  # exactly what a model that does not exist gets (anonymous: 401)
        for path in (
            "/v1/models/t/secret-model",
            f"/v1/models/t/secret-model/versions/{version['id']}",
            "/v1/models/t/secret-model/versions",
        ):
            got = client.get(path).status_code
            assert got == client.get(path.replace("secret-model", "no-such-model")).status_code
            assert got == (404 if client is c else 401)
    assert c.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}).status_code == 422
    # b's own prediction is b's; one made with the org token belongs to the org (members see it)
    by_b = b.post("/v1/models/t/secret-model/predictions", json={"input": {"prompt": "x"}})
    assert by_b.status_code == 201, by_b.text
    by_t = t.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "y"}})
    assert by_t.status_code == 201, by_t.text
    assert b.get(f"/v1/predictions/{by_b.json()['id']}").status_code == 200
    assert c.get(f"/v1/predictions/{by_b.json()['id']}").status_code == 404
    for client in (a, b, t):
        assert client.get(f"/v1/predictions/{by_t.json()['id']}").status_code == 200
    for client in (c, anon):
        assert client.get(f"/v1/predictions/{by_t.json()['id']}").status_code in (401, 404)
        assert client.post(f"/v1/predictions/{by_t.json()['id']}/cancel").status_code in (401, 404)
    assert c.get(f"/v1/predictions/{by_t.json()['id']}").status_code == 404
    # removing b takes effect on b's next call
    assert team["root"].delete("/v1/admin/orgs/t/members/b").status_code == 200
    assert b.get("/v1/models/t/secret-model").status_code == 404
    assert b.get(f"/v1/predictions/{by_t.json()['id']}").status_code == 404
    assert a.get("/v1/models/t/secret-model").status_code == 200


def test_rate_limit_per_account_with_truthful_headers(api, team, schema):
    a, c = team["a"], team["c"]
    version = push(a, "a", "m", schema)
    body = {"version": version["id"], "input": {"prompt": "x"}}
    remaining = []
    for _ in range(5):
        r = a.post("/v1/predictions", json=body)
        assert r.status_code == 201, r.text
        assert r.headers["X-RateLimit-Limit"] == r.headers["ratelimit-limit"] == "5"
        remaining.append(int(r.headers["ratelimit-remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    r = a.post("/v1/predictions", json=body)
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-RateLimit-Remaining"] == "0"
    assert "throttled" in r.json()["detail"]
    # reads draw from the other bucket; another account is unaffected
    assert a.get("/v1/account").status_code == 200
    other = a.get("/v1/account").headers
    assert other["ratelimit-limit"] == "1000"
    assert c.post("/v1/models", json={"owner": "c", "name": "m"}).status_code == 201
    assert c.post("/v1/models", json={"owner": "c", "name": "n"}).status_code == 201


def test_usage_equals_the_sum_of_predict_times(api, services, team, schema):
    a = team["a"]
    version = push(a, "a", "m", schema)
    ids = [
        a.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}).json()["id"]
        for _ in range(3)
    ]
    now = services.clock.now()
    for i, pid in enumerate(ids):
        services.state.update_prediction(pid, {"status": "processing", "started_at": now})
        services.state.update_prediction(
            pid, {"status": "succeeded", "completed_at": now, "metrics": {"predict_time": 0.5 + i}}
        )
    times = [a.get(f"/v1/predictions/{pid}").json()["metrics"]["predict_time"] for pid in ids]
    usage = team["root"].get("/v1/admin/usage", params={"account": "a"}).json()
    assert usage["total"]["predict_time"] == pytest.approx(sum(times))
    assert usage["total"]["predictions"] == 3
    assert usage["results"] == [
        {
            "day": now[:10],
            "hardware": "cpu",
            "predict_time": pytest.approx(sum(times)),
            "predictions": 3,
            "cost": pytest.approx(sum(times) * 0.0001),
        }
    ]
    assert (
        team["root"]
        .get("/v1/admin/usage", params={"account": "a", "since": "2020-01-01", "until": "2020-12-31"})
        .json()["results"]
        == []
    )
    assert team["root"].get("/v1/admin/usage", params={"account": "a", "since": "yesterday"}).status_code == 400
    assert team["root"].get("/v1/admin/usage", params={"account": "b"}).json()["total"]["predict_time"] == 0


def test_the_default_limits_601st_create_in_a_minute_is_refused(tmp_path):
    """At the real defaults (600 creates, 3000 others a minute), through the service the API uses."""
    from cogplane.clock import ManualClock
    from cogplane.domain.errors import RateLimited

    settings = Settings(home=tmp_path / "home")
    assert (settings.rate_create_per_minute, settings.rate_other_per_minute) == (600, 3000)
    services = build_local(settings, clock=ManualClock())
    for _ in range(600):
        services.ratelimits.check("a", "create")
    with pytest.raises(RateLimited) as refused:
        services.ratelimits.check("a", "create")
    assert refused.value.headers["Retry-After"] == "1" and refused.value.headers["X-RateLimit-Limit"] == "600"
    services.ratelimits.check("b", "create")  # another account is unaffected
    services.ratelimits.check("a", "other")  # and so are a's other requests
    services.clock.advance(0.2)  # 10 tokens a second come back
    services.ratelimits.check("a", "create")
