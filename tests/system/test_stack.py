"""Issue 2's system test: the stack over real HTTP — push with the CLI, create, get, list over
pages, cancel, the error paths — and a restart that keeps everything."""

from __future__ import annotations

import pytest

from tests.system.conftest import stack_class, wait_for

pytestmark = pytest.mark.system


def test_cli_push_create_get_list_cancel_over_http(stack, model_copy):
    folder = model_copy("sleeper")
    first = stack.cli("push", str(folder), "local/sleeper")
    version_id = first.stdout.strip()
    assert len(version_id) == 64
    assert "Created model local/sleeper (private)" in first.stderr and "Uploading" in first.stderr
    again = stack.cli("push", str(folder), "local/sleeper")
    assert again.stdout.strip() == version_id, "identical content must give the same version"
    (folder / "README.md").write_text("changed\n")
    changed = stack.cli("push", str(folder), "local/sleeper").stdout.strip()
    assert changed != version_id

    with stack.client() as c:
        model = c.get("/v1/models/local/sleeper").json()
        assert model["visibility"] == "private" and model["latest_version"]["id"] == changed
        since = (c.get("/v1/predictions").json()["results"] or [{"created_at": "2000-01-01T00:00:00Z"}])[0][
            "created_at"
        ]  # the session's stack is shared: list only what this test creates
        created = [
            c.post("/v1/predictions", json={"version": changed, "input": {"seconds": 30, "tag": str(i)}})
            for i in range(7)
        ]
        assert all(r.status_code == 201 for r in created)
        ids = [r.json()["id"] for r in created]
        got = c.get(f"/v1/predictions/{ids[0]}").json()
        assert got["id"] == ids[0] and got["input"] == {"seconds": 30, "tag": "0"}

        # the stack lists 5 per page: 7 predictions -> 2 pages, newest first, absolute next URLs
        seen, url, pages = [], f"/v1/predictions?created_after={since}", 0
        while url:
            page = c.get(url).json()
            pages += 1
            seen += [p["id"] for p in page["results"]]
            url = page["next"]
            assert url is None or (url.startswith(stack.url + "/v1/predictions?") and "cursor=" in url)
        assert pages == 2 and seen == list(reversed(ids))

        for pid in ids:
            r = c.post(f"/v1/predictions/{pid}/cancel")
            assert r.status_code == 200 and r.json()["status"] == "canceled"
        wait_for(lambda: all(c.get(f"/v1/predictions/{pid}").json()["status"] == "canceled" for pid in ids))


def test_error_paths_over_http(stack):
    with stack.anon() as anon:
        r = anon.get("/v1/predictions")
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert anon.get("/v1/predictions", headers={"Authorization": "Bearer wrong"}).status_code == 401
    with stack.client() as c:
        assert c.get("/v1/predictions/nosuchprediction0000000000").status_code == 404
        assert c.get("/v1/models/examples/nosuch").status_code == 404
        r = c.post("/v1/predictions", json={"version": "f" * 64, "input": {}})
        assert r.status_code == 422 and r.json()["title"] == "Invalid version or not permitted"
        r = c.post("/v1/models/examples/hello/predictions", json={"input": {"prompt": 5}})
        assert r.status_code == 422 and r.json()["field"] == "prompt"
        r = c.post("/v1/predictions", content=b"{nope", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        r = c.post("/v1/predictions", content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415


def test_restart_keeps_accounts_models_versions_predictions_and_files(tmp_path, model_copy, pytestconfig):
    """On the simulation: what moto keeps across its restarts (the table's items, the bucket's
    objects, the secrets: simaws/stack.py State); queued SQS messages are not kept there, so the
    prediction is let finish before the stop."""
    Stack = stack_class(pytestconfig)
    home = tmp_path / "home"
    empty_examples = tmp_path / "no-examples"
    empty_examples.mkdir()
    stack = Stack(home, examples=empty_examples)
    stack.start()
    try:
        version_id = stack.cli("push", str(model_copy("sleeper")), "local/keep").stdout.strip()
        with stack.client() as c:
            pid = c.post("/v1/predictions", json={"version": version_id, "input": {"seconds": 0}}).json()["id"]
            if stack.shape == "sim-aws":
                wait_for(lambda: c.get(f"/v1/predictions/{pid}").json()["status"] == "succeeded", timeout=300)
    finally:
        assert stack.stop() == []
    assert (home / "token").read_text().strip()

    again = Stack(home, port=stack.port, examples=empty_examples)
    again.start()
    try:
        with again.client() as c:
            assert c.get("/v1/account").json()["username"] == "local"
            assert c.get("/v1/models/local/keep").json()["latest_version"]["id"] == version_id
            assert c.get(f"/v1/models/local/keep/versions/{version_id}").status_code == 200
            prediction = wait_for(
                lambda: (p := c.get(f"/v1/predictions/{pid}").json())["status"] == "succeeded" and p, timeout=120
            )
            assert prediction["output"] == "slept 0"
        # the bundle (a file in the blob store) survived too: the runner could run it after the restart
    finally:
        assert again.stop() == []
