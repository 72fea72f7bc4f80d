"""The runner's own HTTP server, the only address cog is given: on 127.0.0.1 where cog shares the
runner's network namespace (source versions; image versions on Fargate), else on the runner's
address towards cog (image versions on EC2: bridge networking, the model in its own container; see
`address_towards`), where every path lies under a secret prefix: other containers on the
instance's Docker bridge can connect, but cannot post a prediction's webhooks.

- `POST /webhook/{id}`: cog's webhooks, parsed here into a typed `CogUpdate` and handed on;
- `GET /input/{token}/{name}`: a file input served to cog from the blob store, under an
  unguessable token that lives as long as its prediction (`serve_blob`, `release`);
- `PUT /upload/{name}`: the upload target of image tasks whose cog was started with
  `--upload-url` (still served for old tasks); answered with a `/blob/{key}` Location.

It knows nothing of predictions' state: what arrives goes to the two callbacks it is given.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cogplane.domain.strictjson import loads_lenient
from cogplane.services.presenters import blob_ref
from gpu_runner.cog_client import CogUpdate

OnUpdate = Callable[[str, CogUpdate], None]  # (prediction id, what cog reported)
OnUpload = Callable[[str, str, bytes, "str | None"], str]  # (prediction id, name, data, type) -> blob ref


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def address_towards(url: str, timeout: float = 30.0) -> str:
    """The address of this host that cog at `url` (COG_URL) reaches it on: 127.0.0.1 for a
    loopback cog, else the local address of the route to cog's host (a UDP `connect` sends
    nothing). The model container's name comes from the task's link (/etc/hosts): retried
    while it does not resolve yet."""
    host = urlsplit(url).hostname or "127.0.0.1"
    if is_loopback(host):
        return "127.0.0.1"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect((host, 9))
                return str(sock.getsockname()[0])
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


class Loopback:
    def __init__(
        self, blobs: Any, *, on_update: OnUpdate, on_upload: OnUpload, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.blobs = blobs
        self.on_update = on_update
        self.on_upload = on_upload
        self.lock = threading.Lock()
        self.served: dict[str, str] = {}  # token -> blob key
        self.served_by_prediction: dict[str, list[str]] = {}
        self.host = host
        # off loopback (a shared bridge), every URL carries a secret: only cog is given it
        self.prefix = "" if is_loopback(host) else "/" + secrets.token_hex(16)
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"

    def start(self) -> Loopback:
        threading.Thread(target=self.httpd.serve_forever, name="runner-http", daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def webhook_url(self, prediction_id: str) -> str:
        return f"{self.base}/webhook/{prediction_id}"

    def blob_key(self, url: str) -> str | None:
        """The blob key of an upload's Location URL (`{base}/blob/{key}`); None for other URLs."""
        prefix = f"{self.base}/blob/"
        return unquote(url[len(prefix) :]) if url.startswith(prefix) else None

    def serve_blob(self, key: str, name: str, prediction_id: str) -> str:
        """An unguessable URL that serves one blob to cog until `release(prediction_id)`."""
        token = uuid.uuid4().hex
        with self.lock:
            self.served[token] = key
            self.served_by_prediction.setdefault(prediction_id, []).append(token)
        safe = os.path.basename(name.replace("\\", "/")) or "input"
        return f"{self.base}/input/{token}/{quote(safe)}"

    def release(self, prediction_id: str) -> None:
        """The prediction is over: its inputs are no longer served."""
        with self.lock:
            for token in self.served_by_prediction.pop(prediction_id, []):
                self.served.pop(token, None)

    def route(self, path: str) -> str | None:
        """A request's path below the secret prefix (None: not under it)."""
        if not self.prefix:
            return path
        return path[len(self.prefix) :] if path.startswith(self.prefix + "/") else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                data = self._body()
                path = loopback.route(self.path)
                if path is None or not path.startswith("/webhook/"):
                    return self._reply(404)
                prediction_id = path.rsplit("/", 1)[-1]
                try:  # a model's lone surrogates or NaN must not make the stored prediction unreadable
                    update = CogUpdate.from_json(loads_lenient(data))
                except ValueError:
                    return self._reply(400)
                self._reply(200)
                loopback.on_update(prediction_id, update)

            def do_GET(self) -> None:  # noqa: N802 - file inputs, served to cog from the blob store
                parts = (loopback.route(self.path) or "").split("?", 1)[0].split("/")
                with loopback.lock:
                    key = loopback.served.get(parts[2]) if len(parts) >= 4 and parts[1] == "input" else None
                if key is None:
                    return self._reply(404)
                try:
                    data = loopback.blobs.get(key)
                except Exception:  # noqa: BLE001 - gone meanwhile
                    return self._reply(404)
                info = loopback.blobs.head(key)
                self.send_response(200)
                self.send_header("Content-Type", (info.content_type if info else None) or "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802
                data = self._body()
                path = loopback.route(self.path)
                if path is None or not path.startswith("/upload/"):
                    return self._reply(404)
                name = os.path.basename(unquote(path[len("/upload/") :])) or "output"
                prediction_id = self.headers.get("x-prediction-id") or "unknown"
                ref = loopback.on_upload(prediction_id, name, data, self.headers.get("content-type"))
                key = ref[len(blob_ref("")) :]
                self._reply(201, {"Location": f"{loopback.base}/blob/{key}"})

        return Handler
