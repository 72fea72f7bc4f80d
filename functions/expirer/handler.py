"""Lambda entry point: the expirer, every minute (EventBridge). On its first run in an execution
environment it also registers the first admin's token, kept in Secrets Manager by the stack, and
installs the platform's own models (cogplane/safety-checker) shipped in this asset, as
`cogplane up` does at every start (an unchanged version is skipped)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cogplane.services.expirer import Expirer
    from cogplane.wiring import Services

from cogplane.domain import pools

log = logging.getLogger("cogplane.expirer")
logging.getLogger().setLevel(logging.INFO)

METRICS_NAMESPACE = "cogplane"  # infra/constants.py METRICS_NAMESPACE

_expirer = None
_platform_models_installed = False


def bootstrap_admin(services: Services, token: str) -> None:
    """The admin account and its token (idempotent: the token's hash is simply written again)."""
    # settings.admin_username: COGPLANE_ADMIN_USERNAME (make sim-aws passes COGPLANE_USER), default admin
    username = services.settings.admin_username or "admin"
    services.accounts.ensure_account(username, name="Administrator", admin=True)
    services.accounts.issue_token(username, token)


def _admin_token(secret_arn: str) -> str:
    from cogplane.adapters.aws.clients import client

    return client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"].strip()


def _get_expirer() -> Expirer:
    global _expirer
    if _expirer is None:  # built once per execution environment, on the first event
        from cogplane.logs import setup_json_logging
        from cogplane.services.expirer import Expirer
        from cogplane.settings import Settings
        from cogplane.wiring import build

        setup_json_logging("expirer")

        services = build(Settings())
        if services.settings.admin_token_secret_arn:
            bootstrap_admin(services, _admin_token(services.settings.admin_token_secret_arn))
        _expirer = Expirer(services)
    return _expirer


def install_platform_models(expirer: Expirer) -> bool:
    """The platform's models, once per execution environment; a failure is logged and tried again
    on the next event (the expiry itself still runs). Their pools are then watched by the
    reconcile pass: a runner queues the checker's predictions without waking its pool (runner
    tasks have no dispatcher), so each run checks them for queued work with no runner."""
    global _platform_models_installed
    if _platform_models_installed:
        return True
    from cogplane.services.platform_models import install_platform_models as install

    try:
        results = install(expirer.services)
    except Exception:  # an AWS error: the next event tries again
        log.exception("could not install the platform models")
        return False
    for result in results:
        if result.error:
            log.error("could not install the platform model %s: %s", result.model, result.error)
            continue
        if result.created:
            log.info("installed the platform model %s:%s", result.model, result.version_id)
        if result.version_id:
            expirer.watched_pools.add(pools.for_version(result.version_id))
    _platform_models_installed = all(not result.error for result in results)
    return _platform_models_installed


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    expirer = _get_expirer()
    install_platform_models(expirer)
    counts = expirer.run_once()
    log.info("expirer: %s", counts, extra={"counts": counts})
    publish_metrics(counts)
    return counts


def publish_metrics(counts: dict[str, int]) -> None:
    """CloudWatch metrics in Embedded Metric Format (one log line; no API call, no IAM): the
    `PredictionsFailedToStart` alarm watches `StartDeadlineFailures` (predictions stuck in
    `starting` past the start deadline, failed with ECS's reason)."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace=METRICS_NAMESPACE, service="expirer")
    metrics.add_metric(name="StartDeadlineFailures", unit=MetricUnit.Count, value=counts.get("start", 0))
    metrics.add_metric(name="LostRunnerFailures", unit=MetricUnit.Count, value=counts.get("lost", 0))
    metrics.flush_metrics()
