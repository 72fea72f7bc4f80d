"""Webhook delivery: signatures the official clients accept, filter, throttling, terminal last,
retries while the receiver is down (on an injected clock), and the SSRF guard."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from replicate.webhook import Webhooks, WebhookSigningSecret

from cogplane.domain.errors import Unprocessable
from cogplane.netguard import check_url
from cogplane.services.webhooks import WebhookSender, sign
from tests.services.conftest import make_version

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def create(services, webhook, events=None, **body):
    alice, model, version = (
        make_version(services)
        if not services.state.get_model("alice", "m")
        else (
            services.state.get_account("alice"),
            services.state.get_model("alice", "m"),
            services.state.find_versions(services.state.get_model("alice", "m").latest_version_id)[0],
        )
    )
    payload = {"input": {"prompt": "x"}, "webhook": webhook, **body}
    if events is not None:
        payload["webhook_events_filter"] = events
    return services.predictions.create(alice, model, version, payload)


def sender(services, **kw):
    return WebhookSender(services, base_url="https://cogplane.test", allow=["127.0.0.0/8"], check_url=check_url, **kw)


def test_signature_matches_the_documented_test_vector():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_deliveries_validate_with_the_python_client_and_equal_get(local, receiver):
    p = create(local, receiver.url)
    local.state.update_prediction(p.id, {"status": "processing", "started_at": local.clock.now()})
    local.state.update_prediction(p.id, {"status": "succeeded", "output": "hello x", "completed_at": local.clock.now()})
    s = sender(local)
    s.deliver_due()
    assert [r["json"]["status"] for r in receiver.requests] == ["succeeded"], (
        "start is dropped once the prediction is terminal; completed is delivered"
    )
    secret = local.state.get_account("alice").webhook_secret
    for r in receiver.requests:
        # raises (InvalidSignatureError, ...) unless the delivery is valid
        Webhooks.validate(
            headers=r["headers"], body=r["body"].decode(), secret=WebhookSigningSecret(key=secret), tolerance=300
        )
    assert receiver.requests[-1]["json"] == json.loads(s.body_for(local.state.get_prediction(p.id)))
    assert receiver.requests[-1]["json"]["urls"]["get"] == f"https://cogplane.test/v1/predictions/{p.id}"


def test_js_validate_webhook_accepts_our_delivery(local, receiver):
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(REPO, "node_modules", "replicate")):
        pytest.fail("node and node_modules/replicate are required (make install)")
    p = create(local, receiver.url, events=["completed"])
    local.state.update_prediction(p.id, {"status": "succeeded", "output": "ok", "completed_at": local.clock.now()})
    sender(local).deliver_due()
    (r,) = receiver.requests
    script = os.path.join(REPO, "tests", "js", "validate_webhook.mjs")
    env = {
        **os.environ,
        "WEBHOOK": json.dumps(
            {
                "id": r["headers"]["webhook-id"],
                "timestamp": r["headers"]["webhook-timestamp"],
                "signature": r["headers"]["webhook-signature"],
                "body": r["body"].decode(),
                "secret": local.state.get_account("alice").webhook_secret,
            }
        ),
    }
    result = subprocess.run([node, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_filter_throttle_and_terminal_last(local, receiver, clock):
    p = create(local, receiver.url, events=["start", "logs", "completed"])
    s = sender(local)
    s.deliver_due()  # start
    local.state.update_prediction(p.id, {"status": "processing", "started_at": clock.now()})
    for i in range(5):  # five log changes within 0.4 s -> two deliveries: now and at +0.5 s
        local.state.update_prediction(p.id, {"logs": "line\n" * (i + 1), "output": ["x"] * (i + 1)})
        clock.advance(0.1)
        s.deliver_due()
    clock.advance(0.5)
    s.deliver_due()
    local.state.update_prediction(p.id, {"status": "succeeded", "logs": "line\n" * 9, "completed_at": clock.now()})
    local.state.update_prediction(p.id, {"metrics": {"x": 1}}, expect_status=["succeeded"])
    clock.advance(1)
    s.deliver_due()
    statuses = [(r["json"]["status"], r["json"]["logs"].count("line")) for r in receiver.requests]
    assert statuses[0] == ("starting", 0)
    logs_events = statuses[1:-1]
    assert len(logs_events) == 2, statuses  # throttled: at most one per 500 ms
    assert statuses[-1] == ("succeeded", 9)  # the terminal event is the last delivered
    assert all(r["json"]["output"] is None or isinstance(r["json"]["output"], list) for r in receiver.requests)
    assert local.outbox.due("2100-01-01T00:00:00.000000Z", kind="webhook") == []


def test_receiver_down_for_two_minutes_gets_the_terminal_event_exactly_once(local, receiver, clock):
    p = create(local, receiver.url, events=["completed"])
    local.state.update_prediction(p.id, {"status": "succeeded", "output": "ok", "completed_at": clock.now()})
    s = sender(local)
    receiver.status = 503
    waited = 0.0
    while waited < 120:
        s.deliver_due()
        clock.advance(5)
        waited += 5
    failures = len(receiver.requests)
    assert failures >= 4 and all(r["answered"] == 503 for r in receiver.requests)
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1, "webhook-id stays the same across retries"
    receiver.status = 200
    for _ in range(60):  # another 5 minutes of pumping
        s.deliver_due()
        clock.advance(5)
    ok = [r for r in receiver.requests if r["answered"] == 200]
    assert len(ok) == 1 and ok[0]["headers"]["webhook-id"] in ids


def test_terminal_event_retries_stop_after_the_window(local, receiver, clock):
    p = create(local, receiver.url, events=["completed"])
    local.state.update_prediction(p.id, {"status": "failed", "error": "x", "completed_at": clock.now()})
    s = sender(local, retry_window=900)
    receiver.status = 500
    for _ in range(200):
        s.deliver_due()
        clock.advance(10)
    count = len(receiver.requests)
    assert 5 <= count <= 30  # growing backoff over 15 minutes, then given up
    assert local.outbox.due("2100-01-01T00:00:00.000000Z", kind="webhook") == []


def test_intermediate_events_are_best_effort(local, receiver, clock):
    p = create(local, receiver.url, events=["start"])
    receiver.status = 500
    sender(local).deliver_due()
    clock.advance(60)
    sender(local).deliver_due()
    assert len(receiver.requests) == 1
    assert local.state.get_prediction(p.id).status == "starting"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
def test_private_webhook_targets_are_refused_at_create_without_the_allow_list(tmp_path, url):
    from cogplane.settings import Settings
    from cogplane.wiring import build_local

    services = build_local(Settings(home=tmp_path / "h", public_url="https://x.test", allow_networks=""))
    services.accounts.ensure_account("alice")
    with pytest.raises(Unprocessable) as info:
        create(services, url)
    assert info.value.field == "webhook"


def test_allow_listed_target_is_accepted_and_redelivery_checks_again(local, receiver):
    p = create(local, receiver.url, events=["completed"])
    local.state.update_prediction(p.id, {"status": "succeeded", "completed_at": local.clock.now()})
    strict = WebhookSender(local, base_url="https://x.test", allow=[], check_url=check_url)
    strict.deliver_due()
    assert receiver.requests == [], "refused again at delivery when the allow-list no longer covers it"
