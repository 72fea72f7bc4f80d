"""Large uploads on either shape (`make up`, and `--shape sim-aws`, the deployed one):

- `cogplane push` of a bundle over API Gateway's 10 MB: the bundle goes straight to the store
  (`POST /v1/uploads`: S3's presigned POST deployed), never through API Gateway or Lambda;
- a 20 MB file input with both official clients (Python 1.0.7, JS 1.4.0). On `make up` they upload
  it themselves (`POST /v1/files`, multipart). Deployed they cannot: the clients send the whole file
  in that one request to the API's URL, which API Gateway refuses over 10 MB (and Lambda over 6)
  before any of our code runs, and neither client can be sent elsewhere (Python follows no
  redirect, and a 307 would come after the body anyway). So there they get a clear 413, and the
  file goes up first (`POST /v1/uploads`, then `POST /v1/files {"upload": id}`, what
  `local.cli.upload_bytes` does) and its URL is the input, unchanged clients and all."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest
import replicate.exceptions

from tests.system.conftest import REPO, TOKEN, SimStack, node_env

pytestmark = [pytest.mark.system, pytest.mark.slow]

SIZE = 20 * 1024 * 1024
MODEL = "local/filecat-big"


@pytest.fixture(scope="module")
def pushed(stack, tmp_path_factory):
    """filecat with 20 MB of incompressible weights in its folder: a bundle over 10 MB."""
    target = tmp_path_factory.mktemp("big") / "filecat"
    shutil.copytree(REPO / "tests" / "fixtures" / "system_models" / "filecat", target)
    (target / "weights.bin").write_bytes(os.urandom(SIZE))
    started = time.monotonic()
    result = stack.cli("push", str(target), MODEL)
    print(f"\npush of a {SIZE / 1e6:.0f} MB bundle: {time.monotonic() - started:.1f} s ({type(stack).__name__})")
    return result.stdout.strip().splitlines()[-1]


def test_a_bundle_over_api_gateways_limit_is_pushed_straight_to_the_store(stack, pushed):
    with stack.client() as c:
        version = c.get(f"/v1/models/{MODEL}/versions/{pushed}").json()
    assert version["id"] == pushed


def _file_input(stack, client, path):
    """What the clients get as the file input on this shape (see the module's docstring)."""
    if not isinstance(stack, SimStack):
        return None
    with pytest.raises(replicate.exceptions.ReplicateError) as refused:
        client.files.create(path)
    assert refused.value.status == 413, refused.value
    from local.cli import upload_bytes

    started = time.monotonic()
    with stack.client() as c:
        upload_id = upload_bytes(c, "file", path.read_bytes(), path.name, verify=stack.verify)
        made = c.post("/v1/files", json={"upload": upload_id, "filename": path.name})
    assert made.status_code == 201, made.text
    print(f"\nupload of {SIZE / 1e6:.0f} MB straight to S3 + file: {time.monotonic() - started:.1f} s")
    return made.json()["urls"]["get"]


def test_both_official_clients_run_a_20_mb_file_input(stack, pushed, tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    client = stack.replicate(timeout=None)
    url = _file_input(stack, client, path)

    started = time.monotonic()
    with open(path, "rb") as fh:
        out = client.run(MODEL, input={"file": url or fh})
    print(f"\npython client, 20 MB input: {time.monotonic() - started:.1f} s ({type(stack).__name__})")
    assert out["size"] == SIZE and out["sha256"] == digest, out

    node = shutil.which("node")
    assert node, "node is required for the JS client tests"
    script = """
import Replicate from "replicate";
import { readFileSync } from "node:fs";
const replicate = new Replicate({ auth: process.env.COGPLANE_TOKEN, baseUrl: `${process.env.COGPLANE_URL}/v1` });
const file = process.env.BIG_URL || readFileSync(process.env.BIG_PATH);
const out = await replicate.run(process.env.BIG_MODEL, { input: { file } });
console.log(JSON.stringify(out));
"""
    env = node_env(stack, BIG_PATH=str(path), BIG_URL=url or "", BIG_MODEL=MODEL, COGPLANE_TOKEN=TOKEN)
    started = time.monotonic()
    result = subprocess.run(
        [node, "--input-type=module", "-e", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    print(f"js client, 20 MB input: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["size"] == SIZE and out["sha256"] == digest, out
