"""The input cog gets: every file input (`format: uri`) that is a URL becomes a URL of the runner's
own loopback server, so cog never reaches a user-chosen host and never needs our CA:

- our `/v1/files/{id}` URLs are served from the blob store;
- other http(s) URLs are fetched here through cogplane.netguard (the install's allow-list, size
  and time limits, no redirects to unchecked hosts), stored in the blob store under the
  prediction, and served from there;
- `data:` URIs go to cog unchanged. A failed fetch fails the prediction (InputFetchError).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from cogplane.schema import file_inputs
from cogplane.services.files import file_id_from_url

Serve = Callable[[str, str, str], str]  # (blob key, file name, prediction id) -> a loopback URL


class InputFetchError(Exception):
    """A file input could not be fetched or served: the prediction fails with this message."""


class Inputs:
    def __init__(self, services: Any, *, serve: Serve, folder: Callable[[str], str]) -> None:
        """`serve` makes a loopback URL for a blob; `folder(prediction_id)` is the prediction's
        blob folder (`predictions/{blob_dir}/`), where fetched inputs are kept."""
        self.services = services
        self.serve = serve
        self.folder = folder
        self.counter = itertools.count(1)

    def prepare(self, schema: dict[str, Any], value: dict[str, Any], prediction_id: str) -> dict[str, Any]:
        files = file_inputs(schema)
        out = dict(value)
        for name, is_list in files.items():
            if out.get(name) is None:
                continue
            if is_list and isinstance(out[name], list):
                out[name] = [self._url(name, v, prediction_id) for v in out[name]]
            elif not is_list:
                out[name] = self._url(name, out[name], prediction_id)
        return out

    def _url(self, field: str, value: Any, prediction_id: str) -> Any:
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            return value
        file_id = file_id_from_url(value)
        if file_id:
            record = self.services.state.get_file(file_id)
            if record is None:
                raise InputFetchError(f"{field}: the file {value} no longer exists.")
            return self.serve(record.blob_key, record.name, prediction_id)
        from cogplane import netguard
        from cogplane.tls import ssl_context

        settings = self.services.settings
        try:
            data, content_type, filename = netguard.fetch(
                value,
                allow=settings.allowed_networks,
                max_bytes=settings.max_input_fetch_bytes,
                timeout=settings.input_fetch_timeout_seconds,
                ssl_context=ssl_context(settings.home, settings.ca),
            )
        except ValueError as exc:  # BlockedURL / FetchError
            raise InputFetchError(f"{field}: could not fetch the input file: {exc}") from exc
        key = f"{self.folder(prediction_id)}inputs/{next(self.counter)}/{filename}"
        self.services.blobs.put(key, data, content_type=content_type)
        return self.serve(key, filename, prediction_id)
