"""The consume -> handle -> ack loop every service worker runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from spr.shared.errors import validation_problems
from spr.shared.queue.alarm import DeadLetterAlarm
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.errors import BackpressureTimeout, PermanentError, QueueUnavailable
from spr.shared.queue.queue import Queue
from spr.shared.queue.reconnect import RedisLost, wait_for_redis

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """What a worker did: entries acknowledged, failed (to be retried), and dead-lettered."""

    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0

    @property
    def handled(self) -> int:
        return self.processed + self.failed + self.dead_lettered


def describe_error(exc: BaseException) -> str:
    """One line about ``exc`` that does not echo the payload (pydantic errors list fields, not values)."""
    if isinstance(exc, ValidationError):
        count = exc.error_count()
        return (
            f"invalid {exc.title} payload ({count} error{'' if count == 1 else 's'}): "
            f"{validation_problems(exc)}"
        )
    return f"{type(exc).__name__}: {exc}"


def run_worker(
    queue: Queue,
    stream: str,
    group: str,
    consumer: str,
    handle: Callable[[Delivery], None],
    *,
    stop: threading.Event,
    max_items: int | None = None,
    idle_exit_s: float | None = None,
    batch_size: int = 1,
    prepare: Callable[[list[Delivery]], None] | None = None,
) -> WorkerStats:
    """Consume ``stream`` as ``consumer`` of ``group`` and pass each entry to ``handle``.

    ``handle`` must write its output (e.g. publish downstream) before returning: the entry is acked
    right after. An exception from ``handle`` is a failed attempt (retried, dead-lettered after
    ``max_deliveries``); a pydantic ValidationError or PermanentError dead-letters the entry at once
    (poison input), as does an entry the queue cannot decode. BackpressureTimeout stops the worker,
    leaving the entry pending for a later reclaim. A lost Redis connection (QueueUnavailable) is waited
    out with back-off for ``reconnect_timeout_s`` (the entry in hand stays pending and is reclaimed
    after the visibility timeout), then stops the worker with :class:`RedisLost`.

    Consumers of ``group`` idle past ``stale_consumer_s`` with nothing pending are removed at start and
    every half of that period. When more than ``alarm_fraction`` of the last ``alarm_window`` entries
    were dead-lettered, an ERROR names the reasons and the fix (:class:`DeadLetterAlarm`).

    Up to ``batch_size`` entries are read at once (default 1, so none waits in a local batch while its
    visibility timeout runs); ``prepare``, when given, sees the whole batch before ``handle`` gets its
    entries one by one (a handler computes their shared work there, e.g. one model call for all). Each
    entry is still acked or failed alone, right after its ``handle`` returns or raises.
    Returns when ``stop`` is set, after ``max_items`` entries, or after ``idle_exit_s`` seconds without
    any entry.
    """
    if batch_size < 1:
        raise ValueError("run_worker: batch_size must be >= 1")
    stats = WorkerStats()
    config = queue.config
    alarm = DeadLetterAlarm(stream, group, window=config.alarm_window, fraction=config.alarm_fraction)
    who = f"worker {consumer} on {stream}/{group}"
    last_activity = time.monotonic()
    next_prune = time.monotonic()
    block_ms = config.block_ms
    while not stop.is_set():
        if max_items is not None and stats.handled >= max_items:
            break
        wait_ms = block_ms
        if idle_exit_s is not None:
            remaining_s = idle_exit_s - (time.monotonic() - last_activity)
            if remaining_s <= 0:
                logger.info("%s: idle for %.1f s, exiting", who, idle_exit_s)
                break
            wait_ms = max(1, min(block_ms, round(remaining_s * 1000)))
        try:
            if time.monotonic() >= next_prune:
                queue.remove_stale_consumers(stream, group)
                next_prune = time.monotonic() + config.stale_consumer_s / 2
            undecodable: list[str] = []  # dead-lettered by the queue while reading (not UTF-8, no fields)
            count = batch_size if max_items is None else max(1, min(batch_size, max_items - stats.handled))
            deliveries = queue.consume(
                stream, group, consumer, count=count, block_ms=wait_ms, undecodable=undecodable
            )
            for entry_id in undecodable:
                stats.dead_lettered += 1
                alarm.record(f"undecodable entry {entry_id}")
            if not deliveries:
                continue
            last_activity = time.monotonic()
            if prepare is not None:
                prepare(deliveries)
            for delivery in deliveries:
                outcome = _handle_one(queue, delivery, handle, stats)
                if outcome is not _RETRY:
                    alarm.record(outcome)
        except RedisLost:
            raise
        except QueueUnavailable as exc:
            if not wait_for_redis(queue, exc, who=who, stop=stop):
                break
        last_activity = time.monotonic()  # idle time counts from the end of the work, not its start
    return stats


# _handle_one's outcome for a failed attempt that will be retried (neither done nor dead).
_RETRY = "retry"


def _handle_one(
    queue: Queue, delivery: Delivery, handle: Callable[[Delivery], None], stats: WorkerStats
) -> str | None:
    """Handle, then ack or fail the entry; returns None (done), the dead-letter reason, or _RETRY."""
    try:
        handle(delivery)
    except (QueueUnavailable, BackpressureTimeout):
        raise
    except (ValidationError, PermanentError) as exc:
        error = describe_error(exc)
        queue.fail(delivery, error, permanent=True)
        stats.dead_lettered += 1
        logger.warning(
            "dead-lettered entry %s (item %s) of %s/%s at once: %s",
            delivery.entry_id,
            delivery.item_id,
            delivery.stream,
            delivery.group,
            error,
        )
        return error
    except Exception as exc:
        error = describe_error(exc)
        dead = queue.fail(delivery, error)
        if dead:
            stats.dead_lettered += 1
        else:
            stats.failed += 1
        logger.warning(
            "entry %s (item %s) of %s/%s failed on delivery %d/%d (%s): %s",
            delivery.entry_id,
            delivery.item_id,
            delivery.stream,
            delivery.group,
            delivery.deliveries,
            queue.config.max_deliveries,
            "dead-lettered" if dead else "will retry",
            error,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        return error if dead else _RETRY
    queue.ack(delivery)
    stats.processed += 1
    return None
