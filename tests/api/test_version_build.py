"""Issue 10, logs that belong to the model: a version's environment build has its own log,
shown as the `build` field of GET /v1/models/{owner}/{name}/versions/{id} and on the model page."""

from __future__ import annotations

from cogplane import builds
from tests.api.conftest import push


def test_a_version_no_runner_has_booted_shows_a_pending_build(client, schema):
    v = push(client, "alice", "hello", schema)
    body = client.get(f"/v1/models/alice/hello/versions/{v['id']}").json()
    assert body["build"] == {"status": "pending", "logs": None}
    assert "build" not in client.get("/v1/models/alice/hello/versions").json()["results"][0]  # the list stays lean


def test_the_build_log_the_runner_wrote_is_shown_by_the_api_and_the_web_page(client, services, schema):
    v = push(client, "alice", "hello", schema, visibility="public")
    log = builds.BuildLog(services.blobs, v["id"])
    log("cogplane: ignoring 'cog==0.22.0': models run on cog==0.23.1")
    log("Successfully installed six-1.17.0")
    log.save("succeeded", environment="abcdef012345", python_version="3.11", build_seconds=1.5)
    build = client.get(f"/v1/models/alice/hello/versions/{v['id']}").json()["build"]
    assert build["status"] == "succeeded" and build["environment"] == "abcdef012345"
    assert build["logs"].splitlines() == [
        "cogplane: ignoring 'cog==0.22.0': models run on cog==0.23.1",
        "Successfully installed six-1.17.0",
    ]
    page = client.get("/alice/hello").text
    assert "Environment build" in page and "Successfully installed six-1.17.0" in page


def test_a_failed_build_keeps_its_error_and_a_huge_log_keeps_its_tail(client, services, schema):
    v = push(client, "alice", "hello", schema)
    builds.write(
        services.blobs,
        v["id"],
        "failed",
        "x" * (builds.MAX_LOG_CHARS + 10) + "\nERROR: no such package",
        error="pip install failed (exit 1): ERROR: no such package",
    )
    build = client.get(f"/v1/models/alice/hello/versions/{v['id']}").json()["build"]
    assert build["status"] == "failed" and build["error"].startswith("pip install failed")
    assert build["logs"].endswith("ERROR: no such package") and len(build["logs"]) < builds.MAX_LOG_CHARS + 100


def test_strangers_do_not_see_a_private_versions_build(client, bob, schema):
    v = push(client, "alice", "hello", schema)
    assert bob.get(f"/v1/models/alice/hello/versions/{v['id']}").status_code == 404
