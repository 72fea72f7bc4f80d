"""The expirer and webhooks Lambdas with their real event shapes, on moto's AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EVENTS = Path(__file__).resolve().parents[1] / "events"
ADMIN_TOKEN = "r8_" + "A1b2C3d4" * 5


class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def admin_secret(aws, monkeypatch):
    import boto3

    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="cogplane-admin-token", SecretString=ADMIN_TOKEN
    )["ARN"]
    monkeypatch.setenv("COGPLANE_ADMIN_TOKEN_SECRET_ARN", arn)
    return arn


def test_expirer_registers_the_first_admin_token_and_runs_on_schedule(admin_secret, monkeypatch):
    from cogplane.settings import Settings
    from cogplane.wiring import build
    from functions.expirer import handler as module

    monkeypatch.setattr(module, "_expirer", None)
    counts = module.handler(_event("eventbridge_scheduled.json"), LambdaContext())
    assert isinstance(counts, dict)
    account = build(Settings()).accounts.authenticate(f"Bearer {ADMIN_TOKEN}")
    assert account.username == "admin"
    # Later runs in the same execution environment do not read the secret again.
    assert module.handler(_event("eventbridge_scheduled.json"), LambdaContext()) == counts


@pytest.mark.parametrize("event_file", ["dynamodb_stream_outbox_insert.json", "eventbridge_scheduled.json"])
def test_webhooks_drain_what_is_due_and_report_no_stream_failures(aws, monkeypatch, event_file):
    from functions.webhooks import handler as module

    monkeypatch.setenv("COGPLANE_PUBLIC_URL", "https://abc123.execute-api.us-east-1.amazonaws.com/api")
    monkeypatch.setattr(module, "_sender", None)
    result = module.handler(_event(event_file), LambdaContext())
    assert result["batchItemFailures"] == []
    assert result["handled"] == 0
