"""A Lambda Function URL (RESPONSE_STREAM) in front of a function run by the Lambda Web Adapter.

The adapter layer execs the function's handler script (functions/stream/run.sh), waits for the
readiness path, then relays each request to the web server the script started, streaming the
response. Here one such execution environment (a Python 3.12 process with the asset and the
runtime's packages) is started on the first request and relays concurrent requests (Lambda would
start one environment per concurrent stream); the function's timeout cuts a response.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

from simaws.apigw import serve_lifespan
from simaws.lambdas import LambdaFunction

log = logging.getLogger("simaws.funcurl")

# Host is kept, as a Function URL's event keeps it (the app sees its own URL's host).
_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"proxy-connection"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebAdapterFunction:
    def __init__(self, function: LambdaFunction, bin_dir: Path):
        self.function = function
        self.bin_dir = bin_dir  # holds `python3` -> the 3.12 interpreter (what run.sh execs)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._lock = threading.Lock()
        self.cold_starts = 0

    def ensure(self, timeout: float | None = None) -> int:
        # the adapter waits for readiness within Lambda's 10 s init; a loaded machine gets more
        timeout = timeout or float(os.environ.get("SIMAWS_INIT_TIMEOUT", "60"))
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return self.port
            cfg = self.function.config
            self.port = free_port()
            env = self.function.process_environment()
            env.update(
                {
                    "PORT": str(self.port),
                    "AWS_LWA_PORT": str(self.port),
                    "PATH": f"{self.bin_dir}:{env['PATH']}",
                    "PYTHONPATH": str(self.function.runtime_dir),
                    "PYTHONNOUSERSITE": "1",
                }
            )
            handler = cfg.code / cfg.handler
            log_file = open(self.function.log_path, "ab")
            self.proc = subprocess.Popen(
                ["/bin/sh", str(handler)],
                cwd=str(cfg.code),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log_file.close()
            self.cold_starts += 1
            readiness = cfg.environment.get("AWS_LWA_READINESS_CHECK_PATH", "/")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{cfg.name} exited during init ({self.proc.returncode})")
                try:
                    if httpx.get(f"http://127.0.0.1:{self.port}{readiness}", timeout=1).status_code < 500:
                        return self.port
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            self.stop()
            raise RuntimeError(f"{cfg.name} was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
                self.proc.wait()


class FunctionUrl:
    """ASGI: every request goes to the function (no auth: AuthType NONE)."""

    def __init__(self, target: WebAdapterFunction):
        self.target = target
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(target.function.config.timeout_s, connect=5))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await serve_lifespan(receive, send)
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            port = await asyncio.get_running_loop().run_in_executor(None, self.target.ensure)
        except RuntimeError as exc:
            log.error("function URL: %s", exc)
            await _reply(send, 502, b'{"Message":"Internal Server Error"}')
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k not in _HOP and k != b"x-forwarded-proto"]
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))  # https when deployed
        url = f"http://127.0.0.1:{port}{scope.get('raw_path', scope['path'].encode()).decode()}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self.client.build_request(scope["method"], url, headers=headers, content=body)
        deadline = time.monotonic() + self.target.function.config.timeout_s
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            log.error("function URL: %s", exc)
            await _reply(send, 502, b'{"Message":"Internal Server Error"}')
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.encode(), v.encode())
                        for k, v in response.headers.multi_items()
                        if k.lower().encode() not in _HOP | {b"content-length"}
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if time.monotonic() > deadline:  # the function's timeout ends the stream
                    break
        except (httpx.HTTPError, OSError):
            pass
        finally:
            await response.aclose()
        await send({"type": "http.response.body", "body": b""})


async def _reply(send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
