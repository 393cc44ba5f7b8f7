"""The uvicorn configuration of ``spr scorer serve``: connection cap, keep-alive and header timeouts.

:func:`uvicorn_config` is what ``spr scorer serve`` runs, and what the tests and benchmarks run. uvicorn
has no header read timeout of its own, so a client that drips its headers would hold a connection
forever: :func:`guarded_h11` adds one to uvicorn's h11 protocol, and a hard cap on open connections.
The body timeout is enforced by the app (:class:`spr.scorer.middleware.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from spr.scorer.envelope import error_body
from spr.scorer.limits import HEADER_TIMEOUT, TOO_MANY_CONNECTIONS
from spr.scorer.middleware import OVER_CAP
from spr.scorer.settings import ScorerSettings
from spr.scorer.telemetry import ScorerMetrics
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

# Seconds a connection over the cap has for its headers (a health probe sends them at once).
OVER_CAP_HEADER_TIMEOUT_S = 1.0


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = error_body(status, code, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def guarded_h11(
    *, header_timeout_s: float, max_connections: int, on_refuse: Callable[[str], None]
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header timeout and a cap on open connections that spares health.

    A request's headers must arrive within ``header_timeout_s`` seconds of the connection opening (or of
    the first byte of a later request on a kept-alive connection), else 408 and close. Connections
    beyond ``max_connections`` open ones, up to as many again, are marked over the cap (in the ASGI
    scope's state, for :class:`spr.scorer.middleware.ConnectionCapMiddleware`: health probes are
    answered, anything else gets 503) and get at most ``OVER_CAP_HEADER_TIMEOUT_S`` for their headers;
    past twice the cap a connection gets 503 and is closed at once. So a flood of slow clients can
    neither exhaust file descriptors nor take /healthz down.
    """
    timeout_answer = _raw_response(
        408,
        "Request Timeout",
        "request_timeout",
        f"the request headers did not arrive within {header_timeout_s} s (SPR_SCORER_HEADER_TIMEOUT_S)",
    )
    full_answer = _raw_response(
        503,
        "Service Unavailable",
        "busy",
        f"the scorer has {max_connections} connections open (SPR_SCORER_MAX_CONNECTIONS); retry later",
    )

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        _header_timeout_s = header_timeout_s

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            open_now = len(self.connections)
            if open_now > 2 * max_connections:
                on_refuse(TOO_MANY_CONNECTIONS)
                transport.write(full_answer)
                transport.close()
                return
            if open_now > max_connections:
                self.app_state = {**self.app_state, OVER_CAP: True}
                self._header_timeout_s = min(header_timeout_s, OVER_CAP_HEADER_TIMEOUT_S)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the first bytes of a further request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                on_refuse(HEADER_TIMEOUT)
                self.transport.write(timeout_answer)
                self.transport.close()

    return GuardedH11Protocol


def uvicorn_config(
    settings: ScorerSettings,
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
) -> uvicorn.Config:
    """The uvicorn configuration of ``spr scorer serve``: connection cap and timeouts from settings."""
    metrics: ScorerMetrics | None = getattr(app.state, "metrics", None)

    def on_refuse(reason: str) -> None:
        if metrics is not None:
            metrics.refused.labels("http", reason).inc()

    protocol = guarded_h11(
        header_timeout_s=settings.scorer_header_timeout_s,
        max_connections=settings.scorer_max_connections,
        on_refuse=on_refuse,
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "lifespan": "on",
        # uvloop when installed (the scorer extra pins it): each hand-off to the CPU pool wakes the
        # loop through its self-pipe, which uvloop does in C (bench/scorer_load.py --profile).
        "loop": "auto",
        "http": protocol,
        # A backstop only: the guarded protocol closes connection 2N + 1 first, with the JSON envelope
        # (uvicorn's own 503 is plain text and would refuse health probes too).
        "limit_concurrency": 2 * settings.scorer_max_connections + 1,
        "timeout_keep_alive": settings.scorer_keep_alive_timeout_s,
    }
    return uvicorn.Config(app, **options)
