"""gpu_runner.cog_client against a fake cog (tests/runner/conftest.py FakeCog): the one place that
speaks cog's HTTP, and the typed values it reads (health bodies, webhooks)."""

from __future__ import annotations

import threading

import pytest

from gpu_runner.cog_client import CogClient, CogUpdate, HealthResult, validation_message
from gpu_runner.cog_server import free_port
from tests.runner.conftest import FakeCog


def test_health_reads_the_body_not_the_http_status(fake_cog: FakeCog) -> None:
    client = CogClient("127.0.0.1", fake_cog.port)
    ready = client.health()
    assert ready.serving and not ready.failed and ready.setup_logs == "[coglet::setup] loaded\n"
    fake_cog.health = {"status": "SETUP_FAILED", "setup": {"logs": "RuntimeError: no weights"}}
    failed = client.health()
    assert failed.failed and failed.error == "RuntimeError: no weights"
    fake_cog.health = {"status": "unhealthy", "user_healthcheck_error": "GPU lost"}
    assert client.health().status == "UNHEALTHY" and client.health().error == "GPU lost"
    fake_cog.health = {"status": "BUSY"}
    assert client.wait_ready(timeout=1).status == "BUSY"


def test_nothing_listening_is_starting_and_wait_ready_times_out() -> None:
    client = CogClient("127.0.0.1", free_port())
    result = client.health(timeout=0.2)
    assert result.status == "STARTING" and result.error.startswith("health-check:")
    late = client.wait_ready(timeout=0.2, interval=0.05)
    assert late.status == "TIMEOUT" and "not ready after 0.2 s" in late.error and client.url in late.error


def test_predict_is_an_async_put_with_a_webhook(fake_cog: FakeCog) -> None:
    answer = CogClient("127.0.0.1", fake_cog.port).predict("p1", {"prompt": "x"}, "http://127.0.0.1:1/webhook/p1")
    assert answer.accepted
    method, path, body = fake_cog.requests[-1]
    assert (method, path) == ("PUT", "/predictions/p1")
    assert body == {"id": "p1", "input": {"prompt": "x"}, "webhook": "http://127.0.0.1:1/webhook/p1"}
    assert fake_cog.headers[-1]["Prefer"] == "respond-async"
    fake_cog.refuse = (202, "{}")
    CogClient("127.0.0.1", fake_cog.port, route="trainings").predict("t1", {}, "http://h/webhook/t1")
    assert fake_cog.requests[-1][1] == "/trainings/t1"


def test_a_busy_server_is_asked_again_until_a_slot_frees(fake_cog: FakeCog) -> None:
    fake_cog.refuse = (409, '{"detail": "busy"}')
    threading.Timer(0.2, lambda: setattr(fake_cog, "refuse", (202, "{}"))).start()
    answer = CogClient("127.0.0.1", fake_cog.port).predict("p1", {}, "http://h/webhook/p1")
    assert answer.accepted
    assert len([r for r in fake_cog.requests if r[0] == "PUT"]) > 1
    fake_cog.refuse = (409, "busy")
    assert CogClient("127.0.0.1", fake_cog.port).predict("p2", {}, "http://h", busy_for=0.05).status == 409


def test_refusals_and_no_answer_come_back_as_answers(fake_cog: FakeCog) -> None:
    detail = '{"detail": [{"loc": ["body", "input", "prompt"], "msg": "field required"}]}'
    fake_cog.refuse = (422, detail)
    answer = CogClient("127.0.0.1", fake_cog.port).predict("p1", {}, "http://h")
    assert answer.status == 422 and validation_message(answer.text) == "Input validation failed: prompt: field required"
    assert validation_message("not json") == "Input validation failed: not json"
    gone = CogClient("127.0.0.1", free_port()).predict("p1", {}, "http://h")
    assert gone.status == 0 and not gone.accepted and gone.text


def test_cancel_posts_to_the_predictions_cancel_url(fake_cog: FakeCog) -> None:
    assert CogClient("127.0.0.1", fake_cog.port).cancel("p9")
    assert fake_cog.requests[-1][:2] == ("POST", "/predictions/p9/cancel")
    assert not CogClient("127.0.0.1", free_port()).cancel("p9")


def test_webhooks_are_parsed_into_typed_updates() -> None:
    update = CogUpdate.from_json(
        {"status": "failed", "output": None, "logs": "a\n", "error": "Worker crashed", "metrics": {"predict_time": 1}}
    )
    assert update.terminal and update.worker_crashed and update.logs == "a\n" and update.metrics == {"predict_time": 1}
    odd = CogUpdate.from_json({"status": "processing", "logs": 3, "metrics": [1]})
    assert not odd.terminal and odd.logs is None and odd.metrics == {} and not odd.worker_crashed
    with pytest.raises(ValueError):
        CogUpdate.from_json(["not", "an", "object"])
    assert HealthResult.from_body({}).status == "STARTING"
