"""Teams pages (TestClient): the account switcher scoping the dashboard and new predictions, the
tokens page (created with a name, shown once, revoked), the members page for owners, usage."""

from __future__ import annotations

import re

from cogplane.domain.ids import hash_token
from tests.api.conftest import push
from tests.web.conftest import ALICE, BOB


def _team(services):
    services.accounts.create_org("team", owner="alice")
    services.accounts.add_member("team", "bob")


def test_switcher_scopes_dashboard_and_new_predictions(web, other, web_app, services, schema):
    from fastapi.testclient import TestClient

    _team(services)
    api = TestClient(web_app, headers={"Authorization": f"Bearer {ALICE}"})
    push(api, "team", "secret", schema)
    web.sign_in(BOB)
    page = web.get("/dashboard").text
    assert 'option value="team"' in page and "bob (me)" in page
    r = web.post("/account/switch", {"as": "team", "next": "/dashboard"}, from_page="/dashboard")
    assert r.status_code == 303
    r = web.post("/team/secret/run", {"prompt": "hi"}, from_page="/team/secret")
    assert r.status_code == 303, r.text
    pid = r.headers["location"].rsplit("/", 1)[-1]
    assert services.state.get_prediction(pid).owner == "team"  # made as the org
    dashboard = web.get("/dashboard").text
    assert pid in dashboard and 'href="/team/secret"' in dashboard and "Models of team" in dashboard
    # alice (an owner) sees the org's prediction when acting as the org, not in her own dashboard
    other.sign_in(ALICE)
    assert pid not in other.get("/dashboard").text
    other.post("/account/switch", {"as": "team"}, from_page="/dashboard")
    assert pid in other.get("/dashboard").text
    # a user cannot switch to an org they are not in; once removed, the choice is ignored
    services.accounts.remove_member("team", "bob")
    assert pid not in web.get("/dashboard").text
    assert web.post("/account/switch", {"as": "team"}, from_page="/dashboard").status_code == 404


def test_tokens_page_creates_shows_once_and_revokes(web, services):
    web.sign_in(ALICE)
    r = web.post("/account/tokens", {"name": "laptop"}, from_page="/account/tokens")
    assert r.status_code == 200
    token = re.search(r'id="new-token">([^<]+)<', r.text).group(1)
    record = services.state.get_token(hash_token(token))
    assert record is not None and record.name == "laptop" and record.account == "alice"
    page = web.get("/account/tokens").text
    assert "laptop" in page and token not in page  # shown only once
    assert web.post("/account/tokens", {"name": ""}, from_page="/account/tokens").status_code == 400
    r = web.post(f"/account/tokens/{record.id}/revoke", from_page="/account/tokens")
    assert r.status_code == 303
    assert services.state.get_token(hash_token(token)) is None
    # someone else's token id: 404, nothing revoked
    bob = services.state.list_tokens("bob")[0]
    assert web.post(f"/account/tokens/{bob.id}/revoke", from_page="/account/tokens").status_code == 404
    assert services.state.get_token(hash_token(BOB)) is not None


def test_members_page_is_for_owners(web, other, services):
    _team(services)
    services.accounts.ensure_account("carol")
    web.sign_in(ALICE)
    web.post("/account/switch", {"as": "team"}, from_page="/dashboard")
    page = web.get("/account/members").text
    assert "bob" in page and "owner" in page
    assert (
        web.post("/account/members", {"username": "carol", "role": "member"}, from_page="/account/members").status_code
        == 303
    )
    assert services.state.get_member("team", "carol").role == "member"
    assert web.post("/account/members", {"username": "nobody"}, from_page="/account/members").status_code == 404
    assert web.post("/account/members/carol/remove", from_page="/account/members").status_code == 303
    assert services.state.get_member("team", "carol") is None
    # bob is a member, not an owner: no members page, no org tokens
    other.sign_in(BOB)
    other.post("/account/switch", {"as": "team"}, from_page="/dashboard")
    assert other.get("/account/members").status_code == 404
    assert other.get("/account/tokens").status_code == 404


def test_usage_page(web, services, web_app, schema):
    from fastapi.testclient import TestClient

    api = TestClient(web_app, headers={"Authorization": f"Bearer {ALICE}"})
    version = push(api, "alice", "m", schema)
    pid = api.post("/v1/predictions", json={"version": version["id"], "input": {"prompt": "x"}}).json()["id"]
    now = services.clock.now()
    services.state.update_prediction(pid, {"status": "processing", "started_at": now})
    services.state.update_prediction(
        pid, {"status": "succeeded", "completed_at": now, "metrics": {"predict_time": 2.5}}
    )
    web.sign_in(ALICE)
    page = web.get("/account/usage").text
    assert now[:10] in page and "2.500" in page and 'class="bar"' in page
