"""Queue configuration: how the queue behaves (its names are in :mod:`spr.shared.queue.topology`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueConfig:
    """How the queue behaves; one value per process, shared by every stream.

    visibility_timeout_s: seconds an entry may stay delivered-but-unacknowledged before another
        consumer reclaims it (a consumer that died leaves its entries pending this long).
    max_deliveries: an entry is handed to consumers at most this many times, then dead-lettered.
    backlog_limit: publish() waits while the target stream's backlog (undelivered + pending, worst
        consumer group) is above this many entries.
    block_ms: how long consume() waits for new entries by default, in milliseconds (0: do not wait).
    backpressure_timeout_s: give up waiting on backpressure after this many seconds (None: wait forever).
    reconnect_timeout_s: a worker that lost Redis retries (exponential back-off) this many seconds, then
        exits with a clear message.
    stale_consumer_s: consumers idle longer than this many seconds with nothing pending are deleted
        from their group (at worker start and every so often while it runs).
    alarm_window: the dead-letter alarm looks at a worker's last this many entries.
    alarm_fraction: it logs at ERROR (once per window) when more than this fraction of them was
        dead-lettered.
    """

    visibility_timeout_s: float = 60.0
    max_deliveries: int = 3
    backlog_limit: int = 1000
    block_ms: int = 1000
    backpressure_timeout_s: float | None = None
    reconnect_timeout_s: float = 300.0
    stale_consumer_s: float = 3600.0
    alarm_window: int = 20
    alarm_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.visibility_timeout_s < 0:
            raise ValueError("QueueConfig.visibility_timeout_s must be >= 0 seconds")
        if self.max_deliveries < 1:
            raise ValueError("QueueConfig.max_deliveries must be >= 1")
        if self.backlog_limit < 0:
            raise ValueError("QueueConfig.backlog_limit must be >= 0 entries")
        if self.block_ms < 0:
            raise ValueError("QueueConfig.block_ms must be >= 0 milliseconds")
        if self.backpressure_timeout_s is not None and self.backpressure_timeout_s < 0:
            raise ValueError("QueueConfig.backpressure_timeout_s must be >= 0 seconds or None")
        if self.reconnect_timeout_s < 0:
            raise ValueError("QueueConfig.reconnect_timeout_s must be >= 0 seconds")
        if self.stale_consumer_s <= 0:
            raise ValueError("QueueConfig.stale_consumer_s must be > 0 seconds")
        if self.alarm_window < 1:
            raise ValueError("QueueConfig.alarm_window must be >= 1 entries")
        if not 0.0 <= self.alarm_fraction < 1.0:
            raise ValueError("QueueConfig.alarm_fraction must be in [0, 1)")

    @property
    def visibility_timeout_ms(self) -> int:
        return round(self.visibility_timeout_s * 1000)
