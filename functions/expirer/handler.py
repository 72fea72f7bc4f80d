"""Lambda entry point: the expirer, every minute (EventBridge). On its first run in an execution
environment it also registers the first admin's token, kept in Secrets Manager by the stack."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("cogplane.expirer")
logging.getLogger().setLevel(logging.INFO)

ADMIN_USERNAME = "admin"

_expirer = None


def bootstrap_admin(services, token: str) -> None:
    """The admin account and its token (idempotent: the token's hash is simply written again)."""
    services.accounts.ensure_account(ADMIN_USERNAME, name="Administrator", admin=True)
    services.accounts.issue_token(ADMIN_USERNAME, token)


def _admin_token(secret_arn: str) -> str:
    import boto3

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"].strip()


def _get_expirer():
    global _expirer
    if _expirer is None:  # built once per execution environment, on the first event
        from cogplane.services.expirer import Expirer
        from cogplane.settings import Settings
        from cogplane.wiring import build

        services = build(Settings())
        secret_arn = os.environ.get("COGPLANE_ADMIN_TOKEN_SECRET_ARN")
        if secret_arn:
            bootstrap_admin(services, _admin_token(secret_arn))
        _expirer = Expirer(services)
    return _expirer


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    counts = _get_expirer().run_once()
    log.info("expirer: %s", counts)
    return counts
