"""A real cog model with a `Secret` input on the running stack: the model gets the real value, and
the API, the webhooks, the web pages, the stream and every file under COGPLANE_HOME (database, WAL,
runner and cog logs, blobs) hold only `**********`."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.system.conftest import TOKEN, stack_class, wait_for

pytestmark = [pytest.mark.system, pytest.mark.slow]

PLAIN = "sk-live-system-test-5f0c1e29a7d4"
REDACTED = "**********"


@pytest.fixture
def own_stack(tmp_path, pytestconfig):
    """A stack of this test's own: it is stopped before its files are read raw (on the simulation:
    the table and bucket it saves on stop, the functions' and tasks' logs)."""
    (tmp_path / "no-examples").mkdir()
    s = stack_class(pytestconfig)(tmp_path / "home", examples=tmp_path / "no-examples").start()
    try:
        yield s
    finally:
        assert not s.stop(), "processes left behind"


def test_a_secret_reaches_the_model_and_nothing_else(own_stack, model_copy, receiver):
    stack = own_stack
    stack.cli("push", str(model_copy("secret")), "local/secret")
    with stack.client() as c:
        created = c.post(
            "/v1/models/local/secret/predictions",
            headers={"Prefer": "wait"},
            json={"input": {"api_key": PLAIN, "prompt": "hi"}, "webhook": receiver.url, "stream": True},
        )
        assert created.status_code == 201, created.text
        p = created.json()
        assert p["input"] == {"api_key": REDACTED, "prompt": "hi"}
        wait_for(lambda: c.get(f"/v1/predictions/{p['id']}").json()["status"] == "succeeded", timeout=300)
        got = c.get(f"/v1/predictions/{p['id']}")
        listed = c.get("/v1/predictions")
        stream = c.get(p["urls"]["stream"], headers={"Accept": "text/event-stream"}, timeout=60)

        # the model received the real value (it reports only its length and hash)
        digest = hashlib.sha256(PLAIN.encode()).hexdigest()
        assert got.json()["output"] == f"hi: len={len(PLAIN)} sha256={digest}"
        assert got.json()["input"]["api_key"] == REDACTED
        wait_for(lambda: any(r["json"]["status"] == "succeeded" for r in receiver.requests), timeout=60)

        # the web UI, signed in as the owner: the prediction page, its JSON and the dashboard
        signin = c.get("/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', signin).group(1)
        assert c.post(
            "/signin", data={"token": TOKEN, "csrf": csrf, "next": "/dashboard"}, headers={"Authorization": ""}
        ).status_code in (200, 303)
        pages = [c.get(path).text for path in (f"/p/{p['id']}", f"/p/{p['id']}/json", "/dashboard")]

    shown = [created.text, got.text, listed.text, stream.text, *pages, *[r["body"].decode() for r in receiver.requests]]
    for text in shown:
        assert PLAIN not in text
    assert "event: done" in stream.text and digest in stream.text
    # signed in for real: the owner's pages show the prediction (its output) and the mask
    assert digest in pages[0] and "(secret)" in pages[0]
    assert digest in pages[1] and p["id"] in pages[2]

    stack.stop()  # let every writer finish and flush its files, then read them all raw
    for path in stack.home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert PLAIN.encode() not in path.read_bytes(), path
    assert PLAIN not in stack.log()
