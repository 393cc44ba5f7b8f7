"""The uvicorn configuration of ``spr scorer serve``: connection cap, keep-alive and header limits.

:func:`serve` is what ``spr scorer serve`` runs in each server process; it runs :func:`uvicorn_config`,
which the tests and benchmarks run too. The server speaks HTTP/1.1 through httptools (llhttp, in C:
0.14 ms less CPU per localization-only request than h11 in ``bench/scorer_asgi_cost.py``). uvicorn has
neither a header read timeout nor, with httptools, a bound on the header section, so a client that
drips its headers would hold a connection forever and one that streams headers without end would grow
memory: :func:`guarded_httptools` adds both to uvicorn's httptools protocol, and a hard cap on open
connections. The body timeout is enforced by the app (:class:`spr.scorer.middleware.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI
from spr.scorer.app import create_app
from spr.scorer.envelope import error_body
from spr.scorer.heap import prepare_gc_for_serving
from spr.scorer.limits import HEADER_TIMEOUT, HEADER_TOO_LARGE, TOO_MANY_CONNECTIONS
from spr.scorer.loading import load_scorer
from spr.scorer.middleware import OVER_CAP
from spr.scorer.settings import ScorerSettings
from spr.scorer.telemetry import ScorerMetrics
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


def guarded_httptools(
    *,
    header_timeout_s: float,
    max_header_bytes: int,
    max_connections: int,
    on_refuse: Callable[[str], None],
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with header limits and a cap on open connections that spares health.

    A request's headers must arrive within ``header_timeout_s`` seconds of the connection opening (or of
    the first byte of a later request on a kept-alive connection), else 408 and close. A header section
    still incomplete after ``max_header_bytes`` bytes gets 431 and close (counted per read from the
    socket, so a request may overshoot by at most one read, 256 KiB, before it is refused). Connections
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
    too_large_answer = _raw_response(
        431,
        "Request Header Fields Too Large",
        "headers_too_large",
        f"the request headers are over {max_header_bytes} bytes (SPR_SCORER_MAX_HEADER_BYTES); "
        "send fewer or shorter headers",
    )
    full_answer = _raw_response(
        503,
        "Service Unavailable",
        "busy",
        f"the scorer has {max_connections} connections open (SPR_SCORER_MAX_CONNECTIONS); retry later",
    )

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _header_timeout_s = header_timeout_s
        # True from the connection's start, and from a later request's first byte, until its headers
        # are complete: the span the header timeout and the header size limit cover.
        _awaiting_headers = True
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            open_now = len(self.connections)
            if open_now > 2 * max_connections:
                on_refuse(TOO_MANY_CONNECTIONS)
                self._refuse(full_answer)
                return
            if open_now > max_connections:
                self.app_state = {**self.app_state, OVER_CAP: True}
                self._header_timeout_s = min(header_timeout_s, OVER_CAP_HEADER_TIMEOUT_S)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._awaiting_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            if (
                self._awaiting_headers
                and self._header_bytes > max_header_bytes
                and not self.transport.is_closing()
            ):
                on_refuse(HEADER_TOO_LARGE)
                self._refuse(too_large_answer)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._awaiting_headers:  # the first byte of a further request on a kept-alive connection
                self._awaiting_headers = True
                self._header_bytes = 0
                self._arm()

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            self._disarm()
            super().on_headers_complete()

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
            if self._awaiting_headers and not self.transport.is_closing():
                on_refuse(HEADER_TIMEOUT)
                self._refuse(timeout_answer)

        def _refuse(self, answer: bytes) -> None:
            self._disarm()
            self.transport.write(answer)
            self.transport.close()

    return GuardedHttpToolsProtocol


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

    protocol = guarded_httptools(
        header_timeout_s=settings.scorer_header_timeout_s,
        max_header_bytes=settings.scorer_max_header_bytes,
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


def serve(
    settings: ScorerSettings,
    *,
    host: str,
    port: int,
    log_level: str,
    sockets: list[socket.socket] | None = None,
) -> None:
    """One server process: load the models, prepare the collector, serve until stopped.

    On ``host``:``port``, or on ``sockets`` already listening (the prefork children's inherited one).
    The models load before uvicorn starts, so a bad model folder is a ModelLoadError (one line from
    the CLI) instead of a failed start-up.
    """
    app = create_app(settings, scorer=load_scorer(settings))
    prepare_gc_for_serving()
    config = uvicorn_config(settings, app, host=host, port=port, log_level=log_level)
    uvicorn.Server(config).run(sockets=sockets)
