"""Lambda entry point: deliver due webhooks. Woken by the table's stream (a new outbox item) and
by a one-minute schedule (retries that came due); both just drain what is due."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cogplane.services.webhooks import WebhookSender

log = logging.getLogger("cogplane.webhooks")
logging.getLogger().setLevel(logging.INFO)

_sender = None


def _get_sender() -> WebhookSender:
    global _sender
    if _sender is None:  # built once per execution environment, on the first event
        from cogplane.logs import setup_json_logging
        from cogplane.netguard import check_url

        setup_json_logging("webhooks")
        from cogplane.services.webhooks import WebhookSender
        from cogplane.settings import Settings
        from cogplane.wiring import build

        services = build(Settings())
        _sender = WebhookSender(
            services,
            base_url=services.settings.public_url,
            allow=services.settings.allowed_networks,
            check_url=check_url,
        )
    return _sender


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    sender = _get_sender()
    delivered = 0
    while True:  # drain: one stream batch can make more than one page due
        handled = sender.deliver_due()
        delivered += handled
        if handled == 0 or (context is not None and context.get_remaining_time_in_millis() < 15_000):
            break
    log.info("webhooks: %d handled (%s)", delivered, "stream" if "Records" in event else "schedule")
    # Stream records are only a wake-up: nothing in them needs retrying, so report no failures.
    return {"batchItemFailures": [], "handled": delivered}
