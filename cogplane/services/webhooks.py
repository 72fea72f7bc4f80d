"""Webhook delivery from the outbox: signed like Replicate (Standard Webhooks), the terminal
event retried with growing backoff for at least 10 minutes, intermediate events best-effort.

The body is the prediction exactly as `GET /v1/predictions/{id}` returns it at delivery time;
it is signed over the exact bytes sent. `webhook-id` stays the same across retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from cogplane.domain.entities import OutboxEvent
from cogplane.domain.lifecycle import WEBHOOK
from cogplane.domain.status import TERMINAL
from cogplane.domain.timefmt import add_seconds, seconds_between
from cogplane.logs import prediction_context
from cogplane.services.presenters import present_prediction

if TYPE_CHECKING:
    from cogplane.domain.entities import Prediction
    from cogplane.wiring import Services

log = logging.getLogger("cogplane.webhooks")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the key inside `whsec_<base64>`."""
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookSender:
    def __init__(
        self,
        services: Services,
        *,
        base_url: str,
        allow: list[str] | None = None,
        http: httpx.Client | None = None,
        retry_window: float = 900.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 120.0,
        timeout: float = 10.0,
        check_url: Callable[[str, list[str]], Any] | None = None,
    ) -> None:
        self.services = services
        self.base_url = base_url.rstrip("/")
        self.allow = allow or []
        self.http = http or httpx.Client(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": "cogplane-webhooks/0.1"}
        )
        self.retry_window = retry_window  # the terminal event is retried for this long (>= 10 min)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.check_url = check_url

    def deliver_due(self, limit: int = 100) -> int:
        """Deliver (or retry) every webhook event that is due. Returns how many were handled."""
        events = self.services.outbox.due(self.services.clock.now(), kind=WEBHOOK, limit=limit)
        for event in events:
            with prediction_context(event.prediction_id):
                try:
                    self.deliver(event)
                except Exception:  # noqa: BLE001 - one bad event must not block the others
                    log.exception("webhook event %s failed", event.id)
                    self._retry_or_drop(event, terminal=event.payload.get("event") == "completed")
        return len(events)

    def body_for(self, prediction: Prediction) -> bytes:
        """Exactly what GET /v1/predictions/{id} returns now (the same presenter)."""
        body = present_prediction(self.services, prediction, self.base_url)
        return json.dumps(body, separators=(",", ":")).encode()

    def deliver(self, event: OutboxEvent) -> None:
        services = self.services
        kind = event.payload.get("event")
        terminal = kind == "completed"
        prediction = services.state.get_prediction(event.prediction_id)
        if prediction is None or not prediction.webhook:
            services.outbox.complete(event.id)
            return
        if not terminal and prediction.status in TERMINAL:
            services.outbox.complete(event.id)  # the completed event carries it all, and comes last
            return
        if self.check_url is not None:
            try:
                self.check_url(prediction.webhook, self.allow)
            except Exception as exc:  # noqa: BLE001 - a refused target is final
                log.warning("webhook to %s refused: %s", prediction.webhook, exc)
                services.outbox.complete(event.id)
                return
        account = services.state.get_account(prediction.owner)
        if account is None:
            services.outbox.complete(event.id)
            return
        body = self.body_for(prediction)
        message_id = f"msg_{event.id}"
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(account.webhook_secret, message_id, timestamp, body),
        }
        try:
            response = self.http.post(prediction.webhook, content=body, headers=headers)
            ok = 200 <= response.status_code < 300
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if ok:
            services.outbox.complete(event.id)
            return
        log.info("webhook %s (%s) to %s failed: %s", event.id, kind, prediction.webhook, reason)
        self._retry_or_drop(event, terminal=terminal)

    def _retry_or_drop(self, event: OutboxEvent, *, terminal: bool) -> None:
        services = self.services
        now = services.clock.now()
        if not terminal or seconds_between(event.created_at or now, now) >= self.retry_window:
            services.outbox.complete(event.id)  # intermediate events are best-effort
            return
        delay = min(self.backoff_cap, self.backoff_base * (2**event.attempts))
        services.outbox.reschedule(event.id, due_at=add_seconds(now, delay), attempts=event.attempts + 1)
