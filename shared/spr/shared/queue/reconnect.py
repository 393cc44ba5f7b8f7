"""Riding out a Redis outage: retry with exponential back-off for a while, then give up clearly."""

from __future__ import annotations

import logging
import threading
import time

from spr.shared.queue.errors import QueueUnavailable, redact_url
from spr.shared.queue.queue import Queue

logger = logging.getLogger(__name__)

# Back-off between pings while Redis is away (seconds): doubles from the first to the last.
FIRST_PAUSE_S = 0.1
MAX_PAUSE_S = 5.0


class RedisLost(QueueUnavailable):
    """Redis stayed unreachable longer than ``reconnect_timeout_s``: the worker gives up."""


def wait_for_redis(queue: Queue, error: QueueUnavailable, *, who: str, stop: threading.Event) -> bool:
    """Called after ``error`` (a lost connection): wait until Redis answers again.

    Logs one WARNING when the outage starts and one INFO when it ends. Returns True once Redis
    answers, False when ``stop`` was set meanwhile; raises RedisLost after
    ``queue.config.reconnect_timeout_s`` seconds. Work in hand is not lost: an entry that was being
    handled stays pending and is reclaimed after the visibility timeout.
    """
    limit = queue.config.reconnect_timeout_s
    url = redact_url(queue.url)
    logger.warning(
        "%s: lost Redis at %s (%s); retrying for up to %.0f s (SPR_QUEUE_RECONNECT_TIMEOUT_S)",
        who,
        url,
        _cause(error),
        limit,
    )
    started = time.monotonic()
    pause = FIRST_PAUSE_S
    while True:
        waited = time.monotonic() - started
        if waited >= limit:
            raise RedisLost(
                f"{who}: Redis at {url} unreachable for {waited:.0f} s (limit {limit:.0f} s, "
                "SPR_QUEUE_RECONNECT_TIMEOUT_S): exiting. Unfinished entries stay pending in Redis and are "
                "picked up when a worker runs again; start Redis and restart this worker."
            ) from error
        # A production wait for a server to come back, with back-off; stop ends it at once.
        if stop.wait(min(pause, limit - waited)):
            return False
        pause = min(pause * 2, MAX_PAUSE_S)
        try:
            queue.ping()
        except QueueUnavailable:
            continue
        logger.info("%s: Redis at %s is back after %.1f s; carrying on", who, url, time.monotonic() - started)
        return True


def _cause(error: BaseException) -> str:
    cause = error.__cause__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
