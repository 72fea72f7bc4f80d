"""API Gateway REST (Regional, Lambda proxy integration) in front of a LambdaFunction.

What it enforces, as API Gateway does: the stage prefix (`/{stage}/...`; anything else is 403
`Missing Authentication Token`), the 10 MB request limit (413), binary media types (a request body
whose Content-Type matches is base64-encoded into the event, `isBase64Encoded`), Lambda's 6 MB
invoke payload (the event after base64; 413 `Request Too Long` is what this answers, see
README), the integration timeout (29 s -> 504 `Endpoint request timed out`), a function error or a
malformed response (502 `Internal server error`), and base64 responses decoded to bytes when the
binary media types cover them. Event shape: the REST `1.0` proxy event.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from simaws.lambdas import InvokeError, LambdaFunction

log = logging.getLogger("simaws.apigw")

MAX_REQUEST_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_S = 29.0


def _json(status: int, message: str, extra: dict[str, str] | None = None) -> tuple[int, list, bytes]:
    body = json.dumps({"message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"x-amzn-errortype", (extra or {}).get("type", "").encode())]
    return status, [h for h in headers if h[1]], body


def media_matches(content_type: str | None, patterns: list[str]) -> bool:
    if not patterns:
        return False
    value = (content_type or "").split(";")[0].strip().lower()
    return any(fnmatch.fnmatch(value or "application/json", p.lower()) for p in patterns)


class RestApi:
    def __init__(
        self,
        function: LambdaFunction,
        *,
        stage: str,
        binary_media_types: list[str],
        api_id: str,
        account: str,
        timeout_s: float = INTEGRATION_TIMEOUT_S,
        max_workers: int = 64,
    ):
        self.function = function
        self.stage = stage
        self.binary_media_types = list(binary_media_types)
        self.api_id = api_id
        self.account = account
        self.timeout_s = timeout_s
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="apigw")
        self.requests = 0

    # --- the event ---------------------------------------------------------------------------------
    def event(self, scope: dict[str, Any], body: bytes) -> dict[str, Any]:
        path = scope["path"][len(self.stage) + 1 :] or "/"
        multi_headers: dict[str, list[str]] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name = raw_name.decode("latin-1")
            name = "-".join(part.capitalize() for part in name.split("-"))
            multi_headers.setdefault(name, []).append(raw_value.decode("latin-1"))
        client = scope.get("client") or ("127.0.0.1", 0)
        multi_headers.setdefault("X-Forwarded-For", [client[0]])
        multi_headers.setdefault("X-Forwarded-Proto", [scope.get("scheme", "http")])
        multi_headers.setdefault("X-Forwarded-Port", [str((scope.get("server") or ("", 80))[1])])
        headers = {k: v[-1] for k, v in multi_headers.items()}
        query: dict[str, list[str]] = {}
        raw_query = scope.get("query_string", b"").decode("latin-1")
        if raw_query:
            from urllib.parse import parse_qsl

            for key, value in parse_qsl(raw_query, keep_blank_values=True):
                query.setdefault(key, []).append(value)
        content_type = next((v[-1] for k, v in multi_headers.items() if k.lower() == "content-type"), None)
        binary = bool(body) and media_matches(content_type, self.binary_media_types)
        if not body:
            event_body = None
        elif binary:
            event_body = base64.b64encode(body).decode()
        else:
            event_body = body.decode("utf-8", errors="replace")
        resource = "/" if path == "/" else "/{proxy+}"
        now = time.time()
        return {
            "resource": resource,
            "path": path,
            "httpMethod": scope["method"],
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": None if path == "/" else {"proxy": path.lstrip("/")},
            "stageVariables": None,
            "requestContext": {
                "resourceId": "proxy",
                "resourcePath": resource,
                "httpMethod": scope["method"],
                "extendedRequestId": uuid.uuid4().hex[:16],
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "path": scope["path"],
                "accountId": self.account,
                "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
                "stage": self.stage,
                "domainPrefix": self.api_id,
                "requestTimeEpoch": int(now * 1000),
                "requestId": str(uuid.uuid4()),
                "domainName": headers.get("Host", ""),
                "apiId": self.api_id,
                "identity": {
                    "sourceIp": client[0],
                    "userAgent": headers.get("User-Agent"),
                    "caller": None,
                    "accessKey": None,
                    "accountId": None,
                    "user": None,
                    "userArn": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                },
            },
            "body": event_body,
            "isBase64Encoded": binary,
        }

    # --- the response ------------------------------------------------------------------------------
    def response(self, payload: Any) -> tuple[int, list, bytes]:
        if not isinstance(payload, dict) or not isinstance(payload.get("statusCode", 200), int):
            log.error("malformed Lambda proxy response: %.200r", payload)
            return _json(502, "Internal server error")
        status = payload.get("statusCode") or 200
        headers: list[tuple[bytes, bytes]] = []
        for name, value in (payload.get("headers") or {}).items():
            if name.lower() not in {k.lower() for k in (payload.get("multiValueHeaders") or {})}:
                headers.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
        for name, values in (payload.get("multiValueHeaders") or {}).items():
            for value in values or []:
                headers.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
        body = payload.get("body") or ""
        if payload.get("isBase64Encoded") and self.binary_media_types:
            try:
                data = base64.b64decode(body)
            except ValueError:
                return _json(502, "Internal server error")
        else:
            data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
        headers = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding", b"connection")]
        headers.append((b"content-length", str(len(data)).encode()))
        headers.append((b"x-amzn-requestid", str(uuid.uuid4()).encode()))
        return status, headers, data

    # --- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await serve_lifespan(receive, send)
        if scope["type"] != "http":
            return
        status, headers, data = await self.handle(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else data})

    async def handle(self, scope, receive) -> tuple[int, list, bytes]:
        self.requests += 1
        path = scope["path"]
        if not (path == f"/{self.stage}" or path.startswith(f"/{self.stage}/")):
            await _drain(receive)
            return _json(403, "Missing Authentication Token", {"type": "MissingAuthenticationTokenException"})
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
            await _drain(receive)
            return _json(413, "Request Too Long")
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST_BYTES:
                await _drain(receive, message)
                return _json(413, "Request Too Long")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        event = self.event(scope, b"".join(chunks))
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, lambda: self.function.invoke(event))
        try:
            result = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            log.warning("%s %s: integration timed out after %.0f s", scope["method"], path, self.timeout_s)
            return _json(504, "Endpoint request timed out")
        except InvokeError as exc:
            log.warning("%s %s: Lambda invoke failed: %s", scope["method"], path, exc)
            if exc.error_type == "RequestEntityTooLargeException":
                return _json(413, "Request Too Long")
            if exc.error_type == "TooManyRequestsException":
                return _json(429, "Rate Exceeded.")
            return _json(502, "Internal server error")
        if result.error is not None:
            log.warning(
                "%s %s: the function raised %s: %s",
                scope["method"],
                path,
                result.error.get("errorType"),
                result.error.get("errorMessage"),
            )
            return _json(502, "Internal server error")
        return self.response(result.payload)


async def _drain(receive, message: dict | None = None) -> None:
    while message is None or message.get("more_body"):
        message = await receive()
        if message["type"] != "http.request":
            return


async def serve_lifespan(receive, send) -> None:
    """Answer uvicorn's lifespan messages (the emulators hold no state to start or stop)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
