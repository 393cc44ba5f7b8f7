"""Backpressure: a producer waits while the stream it publishes to has too much unfinished work."""

from __future__ import annotations

import logging
import time

import redis
from spr.shared.queue.config import QueueConfig
from spr.shared.queue.errors import BackpressureTimeout
from spr.shared.queue.groups import stream_backlog

logger = logging.getLogger(__name__)

# The backlog is polled this often (seconds), backing off to the maximum while waiting.
_POLL_MIN_S = 0.01
_POLL_MAX_S = 0.5


def wait_for_room(client: redis.Redis, stream: str, config: QueueConfig) -> None:
    """Return once ``stream``'s backlog is at most ``config.backlog_limit`` entries.

    Raises BackpressureTimeout after ``config.backpressure_timeout_s`` seconds of waiting (None: wait
    as long as it takes).
    """
    limit = config.backlog_limit
    backlog = stream_backlog(client, stream)
    if backlog <= limit:
        return
    logger.info("publish to %s waits: backlog %d > limit %d", stream, backlog, limit)
    timeout = config.backpressure_timeout_s
    started = time.monotonic()
    pause = _POLL_MIN_S
    while backlog > limit:
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise BackpressureTimeout(
                f"stream {stream} still has a backlog of {backlog} entries (limit {limit}) after "
                f"{waited:.1f} s: are its consumers running? (raise backlog_limit or "
                "backpressure_timeout_s to wait longer)"
            )
        # Production wait for consumers to drain the stream, not a test: poll with back-off.
        time.sleep(pause if timeout is None else min(pause, max(timeout - waited, 0.0)))
        pause = min(pause * 2, _POLL_MAX_S)
        backlog = stream_backlog(client, stream)
    logger.info("publish to %s resumes after %.2f s", stream, time.monotonic() - started)
