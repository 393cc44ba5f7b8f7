"""The consume -> handle -> ack loop every service worker runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from spr.shared.errors import validation_problems
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.errors import BackpressureTimeout, PermanentError, QueueUnavailable
from spr.shared.queue.queue import Queue

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
) -> WorkerStats:
    """Consume ``stream`` as ``consumer`` of ``group`` and pass each entry to ``handle``.

    ``handle`` must write its output (e.g. publish downstream) before returning: the entry is acked
    right after. An exception from ``handle`` is a failed attempt (retried, dead-lettered after
    ``max_deliveries``); a pydantic ValidationError or PermanentError dead-letters the entry at once
    (poison input). QueueUnavailable and BackpressureTimeout are not the entry's fault: they stop the
    worker, leaving the entry pending for a later reclaim.

    Entries are taken one at a time so none waits in a local batch while its visibility timeout runs.
    Returns when ``stop`` is set, after ``max_items`` entries, or after ``idle_exit_s`` seconds without
    any entry.
    """
    stats = WorkerStats()
    last_activity = time.monotonic()
    block_ms = queue.config.block_ms
    while not stop.is_set():
        if max_items is not None and stats.handled >= max_items:
            break
        wait_ms = block_ms
        if idle_exit_s is not None:
            remaining_s = idle_exit_s - (time.monotonic() - last_activity)
            if remaining_s <= 0:
                logger.info(
                    "worker %s on %s/%s: idle for %.1f s, exiting", consumer, stream, group, idle_exit_s
                )
                break
            wait_ms = max(1, min(block_ms, round(remaining_s * 1000)))
        undecodable: list[str] = []  # dead-lettered by the queue while reading (not UTF-8, no fields)
        deliveries = queue.consume(
            stream, group, consumer, count=1, block_ms=wait_ms, undecodable=undecodable
        )
        stats.dead_lettered += len(undecodable)
        if not deliveries:
            continue
        last_activity = time.monotonic()
        for delivery in deliveries:
            _handle_one(queue, delivery, handle, stats)
        last_activity = time.monotonic()  # idle time counts from the end of the work, not its start
    return stats


def _handle_one(
    queue: Queue, delivery: Delivery, handle: Callable[[Delivery], None], stats: WorkerStats
) -> None:
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
    else:
        queue.ack(delivery)
        stats.processed += 1
