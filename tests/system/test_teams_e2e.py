"""Teams on the running single-machine stack with the real clients: the admin CLI, an org's
private model pushed by one member and run by another (Python and JS clients, user and org
tokens), strangers and anonymous callers shut out, member removal and token revocation taking
effect on the next call, per-account rate limits with the clients' own retries, and usage."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from replicate.exceptions import ReplicateError

from tests.system.conftest import REPO, SimStack, Stack, node_env, start_stack

pytestmark = [pytest.mark.system, pytest.mark.slow]

CREATE_LIMIT = 5
OTHER_LIMIT = 120


class Recording(httpx.HTTPTransport):
    """Below replicate's RetryTransport: sees every attempt, retries included."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[tuple[str, int]] = []

    def handle_request(self, request):
        response = super().handle_request(request)
        self.seen.append((request.method, response.status_code))
        return response


@pytest.fixture(scope="module")
def teams_stack(tmp_path_factory, pytestconfig):
    """Its own stack (low rate limits): `make up`, or with `--shape sim-aws` the simulated deployment."""
    home = tmp_path_factory.mktemp("teams") / "home"
    empty = home.parent / "no-examples"
    empty.mkdir()
    s = start_stack(
        pytestconfig,
        home,
        examples=empty,
        env={
            "COGPLANE_RATE_CREATE_PER_MINUTE": str(CREATE_LIMIT),
            "COGPLANE_RATE_OTHER_PER_MINUTE": str(OTHER_LIMIT),
            "COGPLANE_PRICES": "cpu=0.001",
        },
    )
    try:
        yield s
    finally:
        assert not s.stop()


def admin(stack: Stack, *args: str) -> dict:
    """`cogplane admin ... --json` with the install's first user's token (an admin)."""
    out = stack.cli("admin", *args, "--json").stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return json.loads(lines[0])


def cli_as(stack: Stack, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**stack.env, "COGPLANE_URL": stack.url, "COGPLANE_TOKEN": token}
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "cogplane"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def read(output) -> bytes:
    """A file output's bytes: replicate 1.0.7 wraps https URLs in FileOutput, leaves http ones as str."""
    return httpx.get(output).content if isinstance(output, str) else output.read()


def stripped(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def test_teams_end_to_end(teams_stack, tmp_path):
    stack = teams_stack
    # --- the admin sets up users and an org through the CLI -----------------------------------
    accounts = {u["username"]: u for u in admin(stack, "users", "list")["results"]}
    with stack.client() as first:  # make up's COGPLANE_USER; deployed, the admin-token account
        assert accounts[first.get("/v1/account").json()["username"]]["admin"] is True
    tokens = {name: admin(stack, "users", "create", name)["token"] for name in ("a", "b", "c", "d")}
    org = admin(stack, "orgs", "create", "t", "--owner", "a")
    assert org["type"] == "organization" and org["members"][0]["role"] == "owner"
    assert admin(stack, "orgs", "add", "t", "b")["role"] == "member"
    org_token = admin(stack, "tokens", "create", "t", "--name", "ci")
    assert org_token["token"].startswith("r8_") and org_token["token_id"].startswith("tok_")
    with stack.client(tokens["b"]) as b:
        assert b.get("/v1/account").json() == {**b.get("/v1/account").json(), "type": "user", "username": "b"}
    with stack.client(org_token["token"]) as t:
        assert t.get("/v1/account").json()["type"] == "organization"

    # --- a pushes a private model to the org with the CLI, using a's token ----------------------
    folder = tmp_path / "frames"
    shutil.copytree(REPO / "tests" / "fixtures" / "system_models" / "frames", folder)
    pushed = cli_as(stack, tokens["a"], "push", str(folder), "t/secret-model")
    assert pushed.returncode == 0, pushed.stderr
    version = pushed.stdout.strip()
    refused = cli_as(stack, tokens["c"], "push", str(folder), "t/other-model")
    assert refused.returncode != 0 and "403" in refused.stderr

    # --- b runs it with replicate.run: with the org token, and with b's token (its polls throttled
    # and retried by the client) ---------------------------------------------------------------------
    client_t = stack.replicate(org_token["token"])
    t_output = client_t.run("t/secret-model", input={"count": 1})  # also warms the model's runner
    t_prediction = client_t.predictions.list().results[0]
    assert t_prediction.status == "succeeded"
    output_url = t_prediction.output[0]
    with stack.anon() as anon:
        assert anon.get(output_url).status_code == 200  # signed: anyone holding the link
    assert read(t_output[0]) == b"frame 0\n"

    # b's other-requests bucket is kept empty by a few spenders until the client has been
    # throttled once (they warm up first: a cold Lambda environment takes seconds on sim-aws)
    recording = Recording(verify=stack.verify)
    stop, warm = threading.Event(), threading.Semaphore(0)

    def spend_b_bucket():
        with stack.client(tokens["b"]) as b:
            warmed = False
            while not stop.is_set() and ("GET", 429) not in recording.seen:
                if b.get("/v1/account").status_code == 429 and not warmed:
                    warmed = True
                    warm.release()

    spenders = [threading.Thread(target=spend_b_bucket) for _ in range(4)]
    for spender in spenders:
        spender.start()
    try:
        for _ in spenders:
            assert warm.acquire(timeout=180), "b's bucket never ran out"
        client_b = stack.replicate(tokens["b"], transport=recording)
        # the run polls once or twice; a poll may still find a token refilled between two
        # spenders' calls (the bucket refills by the second): then run again, until one is throttled
        for _ in range(5):
            output = client_b.run("t/secret-model", input={"count": 2}, wait=False)  # polls
            if ("GET", 429) in recording.seen:
                break
    finally:
        stop.set()
        for spender in spenders:
            spender.join()
    assert [read(o) for o in output] == [b"frame 0\n", b"frame 1\n"]
    assert ("GET", 429) in recording.seen, recording.seen  # throttled polls, retried by the client
    assert recording.seen[-1] == ("GET", 200)
    b_prediction = client_b.predictions.list().results[0]

    # --- members see the org's predictions; c and anonymous callers see nothing ----------------------
    with stack.client(tokens["a"]) as a:
        assert a.get(f"/v1/predictions/{t_prediction.id}").status_code == 200
        assert a.get(f"/v1/predictions/{b_prediction.id}").status_code == 404  # b's own
    with stack.client(tokens["c"]) as c, stack.anon() as anon:
        for client, status in ((c, 404), (anon, 401)):
            for path in (
                "/v1/models/t/secret-model",
                "/v1/models/t/secret-model/versions",
                f"/v1/models/t/secret-model/versions/{version}",
                f"/v1/predictions/{t_prediction.id}",
                f"/v1/predictions/{b_prediction.id}",
            ):
                assert client.get(path).status_code == status, (path, client.get(path).text)
            if not isinstance(stack, SimStack):  # moto's S3 checks no signatures (real S3: 403)
                assert client.get(stripped(output_url)).status_code == 404
        assert c.post("/v1/predictions", json={"version": version, "input": {}}).status_code == 422
    with pytest.raises(ReplicateError) as denied:
        stack.replicate(tokens["c"]).run("t/secret-model", input={"count": 1})
    assert denied.value.status == 404

    # --- the JS client on a throttled create (b's create bucket; see tests/js/teams.test.mjs) ---------
    node = shutil.which("node")
    assert node and (REPO / "node_modules" / "replicate").is_dir()
    env = node_env(stack, COGPLANE_TOKEN=tokens["b"], MODEL="t/secret-model")
    js = subprocess.run(
        [node, "--test", str(REPO / "tests" / "js" / "teams.test.mjs")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert js.returncode == 0 and "# pass 1" in js.stdout, js.stdout + js.stderr
    print(next(line for line in js.stdout.splitlines() if "POST attempts" in line))

    # --- rate limits are per account: d's creates run out, a is unaffected ----------------------------
    with stack.client(tokens["d"]) as c, stack.client(tokens["a"]) as a:
        codes = [
            c.post("/v1/models/t/secret-model/predictions", json={"input": {}}).status_code
            for _ in range(CREATE_LIMIT + 1)
        ]
        assert codes[:CREATE_LIMIT] == [404] * CREATE_LIMIT and codes[-1] == 429
        throttled = c.post("/v1/models/t/secret-model/predictions", json={"input": {}})
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
        assert throttled.headers["X-RateLimit-Remaining"] == "0"
        assert throttled.headers["X-RateLimit-Limit"] == str(CREATE_LIMIT)
        created = a.post(
            "/v1/models/t/secret-model/predictions", json={"input": {"count": 1}}, headers={"Prefer": "wait"}
        )
        assert created.status_code == 201 and created.json()["status"] == "succeeded"
        assert int(created.headers["ratelimit-remaining"]) == CREATE_LIMIT - 1

    # --- usage of a equals the sum of its predictions' predict_time ------------------------------
    client_a = stack.replicate(tokens["a"])
    client_a.run("t/secret-model", input={"count": 3})
    mine = client_a.predictions.list().results
    assert len(mine) == 2 and all(p.status == "succeeded" for p in mine)
    usage = admin(stack, "usage", "a")
    assert usage["total"]["predictions"] == 2
    assert usage["total"]["predict_time"] == pytest.approx(sum(p.metrics["predict_time"] for p in mine), abs=1e-5)
    assert usage["results"][0]["hardware"] == "cpu"
    assert usage["total"]["cost"] == pytest.approx(usage["total"]["predict_time"] * 0.001, abs=1e-6)
    org_usage = admin(stack, "usage", "t")
    assert org_usage["total"]["predictions"] == 1
    assert org_usage["total"]["predict_time"] == pytest.approx(t_prediction.metrics["predict_time"], abs=1e-5)

    # --- removing b from t: b's next call is a 404 ------------------------------------------------
    assert admin(stack, "orgs", "remove", "t", "b")["removed"] is True
    with stack.client(tokens["b"]) as b:
        assert b.get("/v1/models/t/secret-model").status_code == 404
        assert b.get(f"/v1/predictions/{t_prediction.id}").status_code == 404
    members = admin(stack, "orgs", "members", "t")["results"]
    assert [m["username"] for m in members] == ["a"]

    # --- a token revoked through the CLI gets 401 on its next call ------------------------------------
    listed = admin(stack, "tokens", "list", "t")["results"]
    assert [x["id"] for x in listed] == [org_token["token_id"]] and listed[0]["last_used_at"]
    assert admin(stack, "tokens", "revoke", org_token["token_id"])["revoked"] is True
    with stack.client(org_token["token"]) as t:
        assert t.get("/v1/account").status_code == 401
    with pytest.raises(ReplicateError) as gone:
        client_t.run("t/secret-model", input={"count": 1})
    assert gone.value.status == 401
    # non-admins do not see the admin routes at all
    with stack.client(tokens["a"]) as a:
        assert a.get("/v1/admin/users").status_code == 404
