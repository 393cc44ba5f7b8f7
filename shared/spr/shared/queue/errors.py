"""The queue's exceptions, and the translation of Redis connection failures into one of them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis
from spr.shared.errors import SprError


class QueueUnavailable(SprError):  # noqa: N818 - the name says what the user meets
    """Redis cannot be reached (not running, wrong URL, network)."""


class BackpressureTimeout(SprError):  # noqa: N818
    """publish() waited longer than ``backpressure_timeout_s`` for the downstream backlog to drain."""


class PermanentError(SprError):
    """Raised by a worker's handler for input that can never succeed: the entry is dead-lettered at once."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print and log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@contextmanager
def translate_redis_errors(url: str) -> Iterator[None]:
    """Turn a connection failure inside the block into :class:`QueueUnavailable` naming the URL."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QueueUnavailable(
            f"cannot reach Redis at {redact_url(url)} ({exc}). Start one with "
            "`redis-server --port 6379` (or `docker compose up -d redis`), or point SPR_REDIS_URL "
            "(--redis-url) at a running server."
        ) from exc
