"""Webhooks through the running stack (the local pump), from a real model's run: signed so the
official Python client validates them, the filter honoured, the terminal event last."""

from __future__ import annotations

import time

import pytest
from replicate.webhook import Webhooks, WebhookSigningSecret

from tests.system.conftest import wait_for

pytestmark = pytest.mark.system


def test_real_run_delivers_signed_webhooks_in_order(stack, model_copy, receiver):
    stack.cli("push", str(model_copy("tokens")), "local/tokens-hooks")
    with stack.client() as c:
        secret = c.get("/v1/webhooks/default/secret").json()["key"]
        requested = time.time()
        p = c.post(
            "/v1/models/local/tokens-hooks/predictions",
            # deployed, webhooks come from the table's stream (1 s batching window) and carry the
            # prediction at delivery time: the run lasts long enough for a body still processing
            json={
                "input": {"text": "a b c d e f", "delay": 0.2 if stack.shape == "local" else 1.0},
                "webhook": receiver.url,
            },
        ).json()
        wait_for(lambda: any(r["json"]["status"] == "succeeded" for r in receiver.requests), timeout=120)
        final = c.get(f"/v1/predictions/{p['id']}").json()
    bodies = [r["json"] for r in receiver.requests]
    assert bodies[-1]["status"] == "succeeded", "the terminal event is the last delivered"
    assert bodies[-1]["output"] == final["output"] == ["a ", "b ", "c ", "d ", "e ", "f"]
    assert bodies[-1] == final, "the terminal webhook's body is exactly what GET returns"
    assert final["urls"]["stream"]  # an iterator model's stream URL is in both
    # `start` is due when the prediction is created; its body is the prediction at delivery time
    timeline = [(r["json"]["status"], round(r["at"] - requested, 2)) for r in receiver.requests]
    assert bodies[0]["status"] in ("starting", "processing"), (final, timeline)
    assert any(b["status"] == "processing" and b["output"] for b in bodies), "output events arrive as it runs"
    for r in receiver.requests:
        Webhooks.validate(
            headers=r["headers"], body=r["body"].decode(), secret=WebhookSigningSecret(key=secret), tolerance=300
        )
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == len(receiver.requests)


def test_a_webhooks_file_urls_return_the_bytes_to_the_receiver(stack, model_copy, receiver):
    """The receiver fetches the output files named in the webhook body, with no token (deployed:
    URLs the platform signs and the stream function serves, not presigned by the webhooks
    function, whose role once could not read the bucket: 403)."""
    import httpx

    stack.cli("push", str(model_copy("frames")), "local/frames-hooks")
    with stack.client() as c:
        c.post(
            "/v1/models/local/frames-hooks/predictions",
            json={"input": {"count": 2}, "webhook": receiver.url, "webhook_events_filter": ["completed"]},
        ).raise_for_status()
        wait_for(lambda: receiver.requests, timeout=180)
    body = receiver.requests[-1]["json"]
    assert body["status"] == "succeeded", body
    assert all("X-Amz-" not in url and "AWSAccessKeyId" not in url for url in body["output"]), body["output"]
    with httpx.Client(verify=stack.verify, timeout=60) as anyone:
        assert [anyone.get(url).content for url in body["output"]] == [b"frame 0\n", b"frame 1\n"]


def test_filter_completed_only(stack, model_copy, receiver):
    stack.cli("push", str(model_copy("tokens")), "local/tokens-hooks")
    with stack.client() as c:
        p = c.post(
            "/v1/models/local/tokens-hooks/predictions",
            json={"input": {"text": "x y"}, "webhook": receiver.url, "webhook_events_filter": ["completed"]},
        ).json()
        wait_for(lambda: receiver.requests, timeout=120)
        wait_for(lambda: c.get(f"/v1/predictions/{p['id']}").json()["status"] == "succeeded", timeout=60)
    time.sleep(1)  # give the pump a chance to (wrongly) send anything else
    assert [r["json"]["status"] for r in receiver.requests] == ["succeeded"]


def test_link_local_webhook_is_refused_with_422(stack):
    with stack.client() as c:
        r = c.post(
            "/v1/models/examples/hello/predictions",
            json={"input": {"prompt": "x"}, "webhook": "http://169.254.169.254/latest/meta-data"},
        )
        assert r.status_code == 422 and r.json()["field"] == "webhook"
