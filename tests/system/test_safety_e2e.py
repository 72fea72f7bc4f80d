"""The safety checker end to end: `cogplane/safety-checker` (open_nsfw, pushed by the stack at
start) run by the runners as an internal prediction, a model's `safety_checker` setting changed
with the CLI, web and API predictions read with the real clients (replicate 1.0.7, JS 1.4.0).

The fixture model `painter` returns [a plain blue 320x240 PNG, a 256x256 PNG of blurred
skin-toned ellipses that open_nsfw scores ~0.91] (tests/fixtures/system_models/painter)."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import pytest

from tests.system.conftest import REPO, TOKEN, Stack, fetch, is_black, node_env, png_pixels, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.slow,
    # the expirer installs the checker a minute after the start: its own simulation, in the default pass
    pytest.mark.own_shape("on the deployed shape: tests/system/test_safety_sim_aws.py (the default pass runs it)"),
]


@pytest.fixture(scope="module")
def safety_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    (root / "no-examples").mkdir()
    s = Stack(root / "home", env={"COGPLANE_EXAMPLES": str(root / "no-examples")}).start()
    try:
        yield s
    finally:
        assert not s.stop(), "processes left behind"


@pytest.fixture(scope="module")
def painter(safety_stack):
    folder = REPO / "tests" / "fixtures" / "system_models" / "painter"
    return safety_stack.cli("push", str(folder), "local/painter").stdout.strip()


def web_run(stack: Stack, model: str, text: str) -> tuple[str, str]:
    """Sign in to the web UI and submit the model's run form: (the new prediction's id, the model
    page's HTML)."""
    with stack.anon(follow_redirects=False) as web:
        page = web.get("/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = web.post("/signin", data={"token": TOKEN, "csrf": csrf, "next": "/dashboard"})
        assert r.status_code == 303, r.text
        page = web.get(f"/{model}")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        version = re.search(r'name="version" value="([0-9a-f]+)"', page.text).group(1)
        r = web.post(f"/{model}/run", data={"csrf": csrf, "version": version, "text": text})
        assert r.status_code == 303, r.text
        return r.headers["location"].rsplit("/", 1)[-1], page.text


def test_web_predictions_are_checked_and_api_ones_only_with_all(safety_stack, painter):
    stack = safety_stack
    client = stack.replicate()
    assert (
        stack.cli("models", "set", "local/painter", "--safety-checker", "web").stdout.strip()
        == "local/painter: safety checker web"
    )
    with stack.client() as c:
        assert c.get("/v1/models/local/painter").json()["safety_checker"] == "web"

    # web: checked, the flagged image replaced by a black one of the same size
    prediction_id, page = web_run(stack, "local/painter", "web")
    assert "Safety checker: web" in page  # the model page shows the setting
    done = client.predictions.get(prediction_id)  # replicate 1.0.7's Prediction parses it (`safety` ignored)
    done.wait()
    assert done.status == "succeeded", (done.error, done.logs)
    with stack.client() as c:
        raw = c.get(f"/v1/predictions/{prediction_id}").json()
    assert raw["safety"] == {"checked": True, "flagged": [1]}
    assert raw["metrics"]["safety_time"] > 0
    assert "Safety checker: output 1 (output_1.png) was flagged" in raw["logs"]
    plain, flagged = (fetch(stack, url) for url in raw["output"])
    assert png_pixels(flagged)[:2] == (256, 256) and is_black(flagged)
    assert png_pixels(plain)[:2] == (320, 240) and not is_black(plain)

    # API with `web`: unchanged, no check
    api = client.predictions.create(version=painter, input={"text": "api"})
    api.wait()
    assert api.status == "succeeded"
    flagged_api = fetch(stack, api.output[1])
    assert png_pixels(flagged_api)[:2] == (256, 256) and not is_black(flagged_api)
    with stack.client() as c:
        raw = c.get(f"/v1/predictions/{api.id}").json()
    assert "safety" not in raw and "safety_time" not in raw["metrics"]

    # `all`: API predictions are checked too, unless the request sets disable_safety_checker
    stack.cli("models", "set", "local/painter", "--safety-checker", "all")
    checked = client.predictions.create(version=painter, input={"text": "api all"})
    checked.wait()
    assert checked.status == "succeeded", (checked.error, checked.logs)
    assert is_black(fetch(stack, checked.output[1])) and not is_black(fetch(stack, checked.output[0]))
    with stack.client() as c:  # replicate 1.0.7 drops create params it does not know: sent raw
        r = c.post(
            "/v1/predictions",
            json={"version": painter, "input": {"text": "opt out"}, "disable_safety_checker": True},
            headers={"Prefer": "wait"},
        )
        assert r.status_code in (200, 201), r.text
        opted = wait_for(
            lambda: (p := c.get(f"/v1/predictions/{r.json()['id']}").json())["status"] == "succeeded" and p, timeout=120
        )
        assert "safety" not in opted
        assert not is_black(fetch(stack, opted["output"][1]))
        bad = c.post("/v1/predictions", json={"version": painter, "input": {}, "disable_safety_checker": "yes"})
        assert bad.status_code == 422 and "disable_safety_checker" in bad.text

    # the JS client: passes disable_safety_checker through, keeps `safety` as it is
    node = shutil.which("node")
    assert node, "node is required for the JS client tests"
    result = subprocess.run(
        [node, "--test", str(REPO / "tests" / "js" / "safety.test.mjs")],
        cwd=REPO,
        env=node_env(stack, PAINTER_VERSION=painter),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checker_is_a_private_model_of_the_platform(safety_stack):
    with safety_stack.client() as c:  # the install's user is not its owner: 404, as for any private model
        assert c.get("/v1/models/cogplane/safety-checker").status_code == 404
    anon = httpx.get(f"{safety_stack.url}/v1/models/cogplane/safety-checker", verify=safety_stack.verify)
    assert anon.status_code in (401, 404)


def test_an_iterator_models_items_are_held_until_checked(safety_stack):
    """`frames` yields 10 text files 50 ms apart: a checked prediction shows no item before the
    check (none is polled, streamed or sent unchecked), then all of them with the terminal state."""
    stack = safety_stack
    folder = REPO / "tests" / "fixtures" / "system_models" / "frames"
    version = stack.cli("push", str(folder), "local/frames").stdout.strip()
    stack.cli("models", "set", "local/frames", "--safety-checker", "all")
    snapshots = []
    with stack.client() as c:
        r = c.post("/v1/predictions", json={"version": version, "input": {"count": 10}})
        assert r.status_code == 201, r.text
        assert r.json()["safety"] == {"checked": False, "flagged": []}

        def done():
            p = c.get(f"/v1/predictions/{r.json()['id']}").json()
            snapshots.append(p)
            return p["status"] in ("succeeded", "failed", "canceled") and p

        final = wait_for(done, timeout=120, interval=0.02)
    assert final["status"] == "succeeded", final
    assert all(p["output"] is None for p in snapshots if p["status"] != "succeeded")
    assert len(final["output"]) == 10
    assert final["safety"] == {"checked": True, "flagged": []}
    assert "no image outputs" in final["logs"]
