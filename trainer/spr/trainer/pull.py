"""Pull preference pairs from ``spr:pairs`` into the spool: consume -> spool (fsync) -> ack.

At-least-once: an entry is acknowledged only after :meth:`Spool.append_many` returned, i.e. after the
pair (or its rejection) is on disk. A trainer killed between the two leaves the entry pending; it is
redelivered after the visibility timeout and dropped as a duplicate by the spool, then acknowledged.

Per entry: a payload that is not a valid PreferencePair is dead-lettered at once (it can never
succeed); a pair the spool could not store (``failed``, e.g. its image is missing under the data root)
is failed back to the queue, which retries it and dead-letters it after ``max_deliveries``.

Stop conditions (any of them): the spool holds ``max_pairs`` pairs; ``timeout_s`` elapsed;
``until_empty`` and the stream is drained for group ``trainers`` (nothing undelivered, nothing pending);
the ``stop`` event is set.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import ValidationError
from spr.shared.queue import GROUP_TRAINERS, STREAM_PAIRS, Delivery, Queue, QueueUnavailable
from spr.shared.queue.reconnect import RedisLost, wait_for_redis
from spr.shared.queue.worker import describe_error
from spr.shared.schemas import PreferencePair
from spr.trainer.spool import Spool

logger = logging.getLogger(__name__)

StopReason = Literal["max_pairs", "timeout", "drained", "stopped"]


def default_consumer_name() -> str:
    """A stable name per host, so a restarted trainer is the same consumer of group ``trainers``."""
    return f"trainer-{socket.gethostname()}"


@dataclass
class PullStats:
    delivered: int = 0
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    invalid: int = 0
    stale: int = 0  # sampled by a policy older than the staleness cap allows: acked, not spooled
    acked: int = 0
    stopped: StopReason | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Puller:
    """Moves pairs from the queue into a spool until a stop condition holds (see the module doc).

    :meth:`run` pulls in the calling thread; :meth:`start` runs it in a background thread (training
    in rounds while pulling), with :meth:`wait_for` to wait until the spool holds enough pairs.
    """

    def __init__(
        self,
        queue: Queue,
        spool: Spool,
        *,
        consumer: str | None = None,
        group: str = GROUP_TRAINERS,
        max_pairs: int | None = None,
        until_empty: bool = False,
        timeout_s: float | None = None,
        batch_size: int = 16,
        block_ms: int = 500,
        on_batch: Callable[[PullStats], None] | None = None,
        accept: Callable[[PreferencePair], bool] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.queue = queue
        self.spool = spool
        self.consumer = consumer or default_consumer_name()
        self.group = group
        self.max_pairs = max_pairs
        self.until_empty = until_empty
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.on_batch = on_batch
        self.accept = accept
        self.stats = PullStats()
        self.stop_event = threading.Event()
        self._changed = threading.Condition()
        self._finished = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- synchronous ---------------------------------------------------------------------------------

    def run(self) -> PullStats:
        """Pull until a stop condition holds; returns the counts (also in ``self.stats``)."""
        started = time.monotonic()
        try:
            self.stats.stopped = self._loop(started)
        finally:
            self.stats.seconds = time.monotonic() - started
            with self._changed:
                self._finished = True
                self._changed.notify_all()
        logger.info("pull stopped (%s): %s", self.stats.stopped, self.stats.as_dict())
        return self.stats

    def _loop(self, started: float) -> StopReason:
        next_prune = time.monotonic()
        # A restarted trainer is the same consumer: what it holds was spooled or not by its previous
        # life; take it back now instead of after the visibility timeout (the spool drops duplicates).
        released = self.queue.release_pending(STREAM_PAIRS, self.group, self.consumer)
        if released:
            logger.info("taking back %d pair entries left pending by this consumer's previous run", released)
        while True:
            if self.stop_event.is_set():
                return "stopped"
            if self.max_pairs is not None and len(self.spool) >= self.max_pairs:
                return "max_pairs"
            if self.timeout_s is not None and time.monotonic() - started >= self.timeout_s:
                return "timeout"
            count = self.batch_size
            if self.max_pairs is not None:
                count = min(count, self.max_pairs - len(self.spool))
            block_ms = self.block_ms
            if self.timeout_s is not None:
                left_ms = int((self.timeout_s - (time.monotonic() - started)) * 1000)
                block_ms = max(1, min(block_ms, left_ms))
            try:
                if time.monotonic() >= next_prune:
                    self.queue.remove_stale_consumers(STREAM_PAIRS, self.group)
                    next_prune = time.monotonic() + self.queue.config.stale_consumer_s / 2
                undecodable: list[str] = []
                deliveries = self.queue.consume(
                    STREAM_PAIRS,
                    self.group,
                    self.consumer,
                    count=count,
                    block_ms=block_ms,
                    undecodable=undecodable,
                )
                # Entries that are not even UTF-8 text: the queue dead-lettered them (raw bytes kept).
                self.stats.invalid += len(undecodable)
                if deliveries:
                    self._handle(deliveries)
                elif self.until_empty and self._drained():
                    return "drained"
            except RedisLost:
                raise
            except QueueUnavailable as exc:
                # Pairs already spooled but not acknowledged come back after the visibility timeout and
                # are dropped as duplicates then.
                who = f"trainer {self.consumer} on {STREAM_PAIRS}/{self.group}"
                if not wait_for_redis(self.queue, exc, who=who, stop=self.stop_event):
                    return "stopped"

    def _handle(self, deliveries: list[Delivery]) -> None:
        self.stats.delivered += len(deliveries)
        valid: list[tuple[Delivery, PreferencePair]] = []
        for delivery in deliveries:
            try:
                valid.append((delivery, delivery.parse(PreferencePair)))
            except ValidationError as exc:
                self.stats.invalid += 1
                error = describe_error(exc)  # names the fields, never echoes the payload
                logger.warning("dead-lettering invalid pair entry %s: %s", delivery.entry_id, error)
                self.queue.fail(delivery, f"not a valid PreferencePair: {error}", permanent=True)
        if self.accept is not None:
            fresh: list[tuple[Delivery, PreferencePair]] = []
            for delivery, pair in valid:
                if self.accept(pair):
                    fresh.append((delivery, pair))
                    continue
                self.queue.ack(delivery)  # sampled by a policy too old to train on: dropped, counted
                self.stats.stale += 1
                self.stats.acked += 1
            valid = fresh
        results = self.spool.append_many([pair for _, pair in valid])
        # The batch is on disk (fsynced): only now acknowledge it.
        for (delivery, _), result in zip(valid, results, strict=True):
            if result.status == "failed":
                self.stats.failed += 1
                self.queue.fail(delivery, result.reason or "spool failed")
                continue
            if result.status == "added":
                self.stats.added += 1
            elif result.status == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.rejected += 1
            self.queue.ack(delivery)
            self.stats.acked += 1
        if self.on_batch is not None:
            self.on_batch(self.stats)
        with self._changed:
            self._changed.notify_all()

    def _drained(self) -> bool:
        # The group's own counters only: a full status would also scan the dead letters at every poll.
        group = self.queue.group_info(STREAM_PAIRS, self.group)
        if group is None:
            return True  # the group has no entry of the stream at all: nothing was ever published
        lag = group.lag if group.lag is not None else self.queue.backlog(STREAM_PAIRS)
        return lag == 0 and group.pending == 0

    # -- background ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`run` in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("Puller.start() called twice")

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # surfaced to the training thread by wait_for/join
                logger.exception("pulling pairs failed")
                self._error = exc

        self._thread = threading.Thread(target=target, name="spr-pull", daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        with self._changed:
            return self._finished

    def wait_for(self, pairs: int) -> bool:
        """Block until the spool holds ``pairs`` pairs (True) or pulling has stopped (False)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.spool) >= pairs or self._finished)
        self._raise_error()
        return len(self.spool) >= pairs

    def join(self) -> PullStats:
        """Stop pulling (if still running) and wait for the thread; re-raises its error."""
        self.stop()
        self._raise_error()
        return self.stats

    def stop(self) -> None:
        """Stop pulling and wait for the thread to finish its batch (errors stay for join)."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error
