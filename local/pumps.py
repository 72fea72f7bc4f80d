"""The single machine's stand-ins for the deployed stack's scheduled functions and bucket rules: a
webhook pump (the same WebhookSender the webhooks Lambda runs), a local expirer timer, and the
`uploads/` backstop that the bucket's lifecycle rule is deployed (uploads never taken are deleted
after a day)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from cogplane.adapters.local.disk import DiskBlobStore
from cogplane.resources import UPLOADS_LIFETIME_DAYS, UPLOADS_PREFIX
from cogplane.services.expirer import Expirer
from cogplane.services.webhooks import WebhookSender

if TYPE_CHECKING:
    from collections.abc import Callable

    from cogplane.wiring import Services

log = logging.getLogger("cogplane.pumps")

UPLOADS_LIFETIME_SECONDS = UPLOADS_LIFETIME_DAYS * 24 * 3600  # as the bucket's `uploads-backstop` rule


class Pumps:
    def __init__(
        self,
        services: Services,
        *,
        base_url: str,
        webhook_interval: float = 0.1,
        expirer_interval: float = 1.0,
        uploads_interval: float = 600.0,
    ) -> None:
        from cogplane.netguard import check_url

        self.sender = WebhookSender(
            services, base_url=base_url, allow=services.settings.allowed_networks, check_url=check_url
        )
        self.expirer = Expirer(services)
        self.webhook_interval = webhook_interval
        self.expirer_interval = expirer_interval
        self.uploads_interval = uploads_interval
        self.blobs = services.blobs
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    def _loop(self, name: str, interval: float, step: Callable[[], object]) -> None:
        while not self.stopped.is_set():
            try:
                busy = step()
            except Exception:  # noqa: BLE001 - a pump must keep pumping
                log.exception("%s pump failed", name)
                busy = 0
            if not busy:
                self.stopped.wait(interval)

    def start(self) -> Pumps:
        for name, interval, step in (
            ("webhooks", self.webhook_interval, self.sender.deliver_due),
            ("expirer", self.expirer_interval, lambda: sum(self.expirer.run_once().values()) and 0),
            ("uploads", self.uploads_interval, lambda: self.expire_uploads() and 0),
        ):
            thread = threading.Thread(target=self._loop, args=(name, interval, step), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def expire_uploads(self) -> int:
        """Delete uploads (`POST /v1/uploads`) older than a day, as the bucket's rule does deployed."""
        if not isinstance(self.blobs, DiskBlobStore):
            return 0
        deleted = self.blobs.delete_older_than(UPLOADS_PREFIX, UPLOADS_LIFETIME_SECONDS)
        if deleted:
            log.info("deleted %d upload(s) older than a day", deleted)
        return deleted

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=15)
