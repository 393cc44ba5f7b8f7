"""ASGI middleware of the scorer app: request metrics, the connection cap, the API key, the body limits.

Plain ASGI (not Starlette's BaseHTTPMiddleware) so that the hot path stays cheap. Order, outermost
first: metrics (sees every answer, 401, 413 and 503 included), connection cap, API key, body size and
time limit, the app.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from spr.scorer.envelope import error_body
from spr.scorer.limits import AUTH, BODY_TIMEOUT, TOO_LARGE, TOO_MANY_CONNECTIONS
from spr.scorer.telemetry import ScorerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes open without the API key: orchestrators probe them without credentials.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Key in the ASGI scope's state of a connection opened beyond SPR_SCORER_MAX_CONNECTIONS.
OVER_CAP = "spr_over_connection_cap"
KNOWN_ROUTES = frozenset({"/score", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})


async def _send_error(
    send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = error_body(status, code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestMetricsMiddleware:
    """Counts requests by route and status and times them (unknown paths share one label)."""

    def __init__(self, app: ASGIApp, metrics: ScorerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in KNOWN_ROUTES else "other"
        status = 500
        started = time.perf_counter()

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status)).inc()


class ConnectionCapMiddleware:
    """On a connection over the cap (see :func:`spr.scorer.serve_config.guarded_httptools`): health probes
    are served, everything else gets 503 ``busy``; either way the connection closes afterwards."""

    def __init__(self, app: ASGIApp, max_connections: int, metrics: ScorerMetrics | None = None) -> None:
        self.app = app
        self.max_connections = max_connections
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("state", {}).get(OVER_CAP):
            await self.app(scope, receive, send)
            return
        if scope.get("path") not in OPEN_PATHS:
            if self.metrics is not None:
                self.metrics.refused.labels("http", TOO_MANY_CONNECTIONS).inc()
            await _send_error(
                send,
                503,
                "busy",
                f"the scorer has {self.max_connections} connections open (SPR_SCORER_MAX_CONNECTIONS); "
                "retry later",
                [(b"retry-after", b"1"), (b"connection", b"close")],
            )
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class ApiKeyMiddleware:
    """Requires ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``) on every route but health.

    The key is compared in constant time (hmac.compare_digest).
    """

    def __init__(self, app: ASGIApp, api_key: str, metrics: ScorerMetrics | None = None) -> None:
        self.app = app
        self._key = api_key.encode()
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        provided = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                provided = value[7:].strip()
                break
            if name == b"x-api-key":
                provided = value.strip()
                break
        if not hmac.compare_digest(provided, self._key):
            if self.metrics is not None:
                self.metrics.refused.labels("http", AUTH).inc()
            await _send_error(
                send,
                401,
                "unauthorized",
                "missing or wrong API key: send 'Authorization: Bearer <key>' "
                "(the key the scorer was started with, SPR_SCORER_API_KEY)",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, and bodies slower than ``timeout_s`` with 408.

    A declared Content-Length over the limit is refused at once; otherwise the body is read (counting,
    so chunked uploads are bounded too) and replayed to the app. The whole body must arrive within
    ``timeout_s`` seconds (slow clients would otherwise hold a connection and a task forever).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float | None = None,
        metrics: ScorerMetrics | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
                break
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        await self.app(scope, _replay([message], receive), send)
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await self._refuse(send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            self._count(BODY_TIMEOUT)
            await _send_error(
                send,
                408,
                "request_timeout",
                f"the request body did not arrive within {self.timeout_s} s (SPR_SCORER_BODY_TIMEOUT_S)",
                [(b"connection", b"close")],
            )
            return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        await self.app(
            scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send
        )

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refused.labels("http", reason).inc()

    async def _refuse(self, send: Send) -> None:
        self._count(TOO_LARGE)
        await _send_error(
            send,
            413,
            "payload_too_large",
            f"request body is over the limit of {self.max_bytes} bytes (SPR_SCORER_MAX_BODY_BYTES)",
            [(b"connection", b"close")],
        )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
