"""The queue: Redis Streams with consumer groups, the only way services talk to Redis.

Semantics (docs/ARCHITECTURE.md, "Queue"):
- at-least-once: a consumer acks an entry only after its output is written; an entry whose consumer
  died stays pending and is reclaimed by a live consumer once idle past the visibility timeout;
- bounded retries: an entry is handed out at most ``max_deliveries`` times, then moved to the
  dead-letter stream with its last error and acknowledged on its source;
- idempotent publish: item ids are deterministic and a stream accepts each item id once;
- backpressure: publish waits while the target stream's backlog is above a limit;
- pending entries are never trimmed (``trim`` stops at the oldest entry some group still needs, and
  nothing calls it automatically).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import redis
from pydantic import BaseModel
from spr.shared.operator_checks import check_redis_url
from spr.shared.queue.backpressure import wait_for_room
from spr.shared.queue.config import QueueConfig
from spr.shared.queue.consumers import release_pending, remove_stale_consumers
from spr.shared.queue.deadletter import MAX_ERROR_CHARS, NO_ERROR_RECORDED, DeadLetter
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.entries import UndecodableEntry, decode_fields, raw_fields_b64, text
from spr.shared.queue.errors import translate_redis_errors
from spr.shared.queue.groups import GroupInfo, read_groups, safe_trim_id, stream_backlog
from spr.shared.queue.readback import scan_items
from spr.shared.queue.scripts import DEAD_LETTER, PUBLISH
from spr.shared.queue.status import QueueStatus, collect_status
from spr.shared.queue.topology import PIPELINE_STREAMS, STREAM_DEAD, errors_key, ids_key, outcomes_key

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)


def bytes_client(client: redis.Redis) -> redis.Redis:
    """A client on the same server as ``client`` whose replies are bytes (not decoded)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


class Queue:
    """A typed client for the pipeline's streams. Thread-safe (redis-py pools connections)."""

    def __init__(
        self,
        client: redis.Redis,
        config: QueueConfig = QueueConfig(),  # noqa: B008 - frozen dataclass
        *,
        url: str = "redis",
        dead_stream: str = STREAM_DEAD,
    ) -> None:
        self._client = client
        # Stream entries are read undecoded: a non-UTF-8 entry must not fail the read of its neighbours.
        self._raw = bytes_client(client)
        self.config = config
        self.url = url
        self.dead_stream = dead_stream
        self._publish_script = client.register_script(PUBLISH)
        self._dead_letter_script = client.register_script(DEAD_LETTER)
        self._groups_ready: set[tuple[str, str]] = set()
        # XAUTOCLAIM is a cursor scan over the pending list; keeping the cursor makes successive calls
        # cover all of it even when its head belongs to consumers that are still working.
        self._reclaim_cursor: dict[tuple[str, str], str] = {}
        # Entries dead-lettered while reading because they could not be decoded, per (stream, group).
        self.undecodable: Counter[tuple[str, str]] = Counter()
        # Entries items() skipped in its last scan (undecodable or not valid as the model).
        self.items_skipped = 0

    @classmethod
    def from_url(cls, url: str, config: QueueConfig = QueueConfig()) -> Queue:  # noqa: B008
        """A queue on the Redis at ``url`` (e.g. ``redis://127.0.0.1:6379/0``); connects lazily.

        A malformed URL is an OperatorError naming SPR_REDIS_URL, not redis-py's ValueError traceback.
        """
        check_redis_url(url, "SPR_REDIS_URL / --redis-url")
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5.0)
        return cls(client, config, url=url)

    def close(self) -> None:
        self._client.close()
        self._raw.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def client(self) -> redis.Redis:
        """The decoding client, for operator tools (recovery) that need plain Redis commands."""
        return self._client

    @property
    def raw_client(self) -> redis.Redis:
        """The same server with undecoded (bytes) replies: read stream entries with it."""
        return self._raw

    def ping(self) -> None:
        """Raise QueueUnavailable unless Redis answers."""
        with translate_redis_errors(self.url):
            self._client.ping()

    # -- producing ---------------------------------------------------------------------------------

    def publish(self, stream: str, item_id: str, payload: BaseModel, *, backpressure: bool = True) -> bool:
        """Append ``payload`` (JSON) to ``stream`` as ``item_id``; False if that id was already published.

        With ``backpressure``, first waits while ``backlog(stream) > backlog_limit``; raises
        BackpressureTimeout after ``backpressure_timeout_s`` seconds of waiting.
        """
        if not item_id:
            raise ValueError("publish: item_id must be a non-empty, deterministic id")
        data = payload.model_dump_json()
        with translate_redis_errors(self.url):
            if self._client.sismember(ids_key(stream), item_id):
                return False  # cheap early exit: no point waiting for room for a duplicate
            if backpressure:
                wait_for_room(self._client, stream, self.config)
            entry_id = self._publish_script(keys=[stream, ids_key(stream)], args=[item_id, data])
        return entry_id is not None

    def backlog(self, stream: str) -> int:
        """Entries of ``stream`` its slowest consumer group has not finished (undelivered + pending)."""
        with translate_redis_errors(self.url):
            return stream_backlog(self._client, stream)

    # -- consuming ---------------------------------------------------------------------------------

    def ensure_group(self, stream: str, group: str) -> None:
        """Create ``group`` on ``stream`` (and the stream) if missing, starting from the first entry."""
        with translate_redis_errors(self.url):
            self._create_group(stream, group)

    def _create_group(self, stream: str, group: str) -> None:
        try:
            # Start id "0": entries published before the group existed are delivered too.
            self._client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add((stream, group))

    def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 1,
        block_ms: int | None = None,
        undecodable: list[str] | None = None,
    ) -> list[Delivery]:
        """Up to ``count`` entries for ``consumer`` of ``group``: reclaimed ones first, then new ones.

        Reclaimed = pending in the group (any consumer) and idle longer than the visibility timeout.
        An entry that would be handed out more than ``max_deliveries`` times is dead-lettered instead.
        Waits up to ``block_ms`` milliseconds (default ``config.block_ms``; 0 = no wait) for new entries
        when nothing was reclaimed. Entries that cannot be decoded are dead-lettered, not returned; their
        ids are appended to ``undecodable`` when given.
        """
        if count < 1:
            raise ValueError("consume: count must be >= 1")
        block = self.config.block_ms if block_ms is None else block_ms
        with translate_redis_errors(self.url):
            if (stream, group) not in self._groups_ready:
                self._create_group(stream, group)
            try:
                return self._consume(stream, group, consumer, count, block, undecodable)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream (and its groups) was deleted since we created the group: recreate once.
                self._create_group(stream, group)
                return self._consume(stream, group, consumer, count, block, undecodable)

    def _consume(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int, undecodable: list[str] | None
    ) -> list[Delivery]:
        deliveries = self._reclaim(stream, group, consumer, count, undecodable)
        if len(deliveries) >= count:
            return deliveries
        # Do not block when reclaiming found work: return it now.
        block = None if deliveries or block_ms <= 0 else block_ms
        # RESP2 reply: [[stream, [(entry_id, fields), ...]]]
        response: Any = self._raw.xreadgroup(
            group, consumer, {stream: ">"}, count=count - len(deliveries), block=block
        )
        for _, entries in response or []:
            for entry_id, fields in entries:
                delivery = self._delivery(stream, group, consumer, text(entry_id), fields, 1, undecodable)
                if delivery is not None:
                    deliveries.append(delivery)
        return deliveries

    def _reclaim(
        self, stream: str, group: str, consumer: str, count: int, undecodable: list[str] | None
    ) -> list[Delivery]:
        key = (stream, group)
        cursor = self._reclaim_cursor.get(key, "0-0")
        reply: list[Any] = self._raw.xautoclaim(
            stream, group, consumer, self.config.visibility_timeout_ms, start_id=cursor, count=count
        )
        self._reclaim_cursor[key] = text(reply[0])
        claimed: list[tuple[str, dict[bytes, bytes] | None]] = [
            (text(entry_id), fields) for entry_id, fields in reply[1]
        ]
        if not claimed:
            return []
        pipe = self._client.pipeline(transaction=False)
        for entry_id, _ in claimed:
            pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
        counts = pipe.execute()
        deliveries: list[Delivery] = []
        for (entry_id, fields), pending in zip(claimed, counts, strict=True):
            if not pending or fields is None:
                continue  # acked or deleted between the claim and now
            times = int(pending[0]["times_delivered"])
            delivery = self._delivery(stream, group, consumer, entry_id, fields, times, undecodable)
            if delivery is None:
                continue  # undecodable: dead-lettered already
            if times > self.config.max_deliveries:
                # The claim itself counted as a delivery that no consumer will see.
                self._dead_letter(delivery, "", times - 1)
                logger.warning(
                    "dead-lettered entry %s (item %s) of %s/%s: handed out %d times without success",
                    entry_id,
                    delivery.item_id,
                    stream,
                    group,
                    times - 1,
                )
                continue
            deliveries.append(delivery)
        return deliveries

    def _delivery(
        self,
        stream: str,
        group: str,
        consumer: str,
        entry_id: str,
        fields: Mapping[bytes, bytes],
        times: int,
        undecodable: list[str] | None,
    ) -> Delivery | None:
        """The entry as a Delivery; None when it cannot be decoded (it is dead-lettered with its bytes)."""
        try:
            decoded = decode_fields(fields)
        except UndecodableEntry as exc:
            moved = self._dead_letter_undecodable(stream, group, entry_id, fields, times, str(exc))
            if moved and undecodable is not None:
                undecodable.append(entry_id)
            return None
        return Delivery(
            stream=stream,
            group=group,
            entry_id=entry_id,
            item_id=decoded.item_id,
            data=decoded.data,
            deliveries=times,
            consumer=consumer,
        )

    def _dead_letter_undecodable(
        self, stream: str, group: str, entry_id: str, fields: Mapping[bytes, bytes], times: int, reason: str
    ) -> bool:
        error = f"undecodable entry: {reason}"[:MAX_ERROR_CHARS]
        moved = self._dead_letter_script(
            keys=[stream, self.dead_stream, errors_key(stream, group)],
            args=[
                group,
                entry_id,
                text(fields.get(b"item_id")) if fields else "",
                "",
                error,
                times,
                datetime.now(UTC).isoformat(),
                NO_ERROR_RECORDED,
                raw_fields_b64(fields),
            ],
        )
        if moved:
            self.undecodable[(stream, group)] += 1
            logger.warning(
                "dead-lettered entry %s of %s/%s at once, raw bytes kept: %s", entry_id, stream, group, error
            )
        return bool(moved)

    def release_pending(self, stream: str, group: str, consumer: str) -> int:
        """Make every entry ``consumer`` holds in ``group`` reclaimable now; returns how many.

        For a consumer that restarts under a stable name (the trainer): what that name holds was left
        by its previous life, so there is no point waiting the visibility timeout for it.
        """
        with translate_redis_errors(self.url):
            released = release_pending(
                self._client, stream, group, consumer, self.config.visibility_timeout_ms
            )
        if released:
            self._reclaim_cursor.pop((stream, group), None)
        return released

    def ack(self, delivery: Delivery) -> None:
        """Mark the entry done in its group. Call only after the entry's output is written."""
        with translate_redis_errors(self.url):
            pipe = self._client.pipeline(transaction=True)
            pipe.xack(delivery.stream, delivery.group, delivery.entry_id)
            pipe.hdel(errors_key(delivery.stream, delivery.group), delivery.entry_id)
            pipe.execute()

    def fail(self, delivery: Delivery, error: str, *, permanent: bool = False) -> bool:
        """Record a failed attempt; True if the entry was dead-lettered, False if it will be retried.

        A retry happens soon: the entry is made reclaimable at once instead of after the visibility
        timeout. ``permanent`` (input that can never succeed) or a last allowed delivery dead-letters
        at once. False is also returned if the entry is no longer pending (another consumer finished it).
        """
        error = error[:MAX_ERROR_CHARS] or "failed (no error text)"
        with translate_redis_errors(self.url):
            if permanent or delivery.deliveries >= self.config.max_deliveries:
                return self._dead_letter(delivery, error, delivery.deliveries)
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(errors_key(delivery.stream, delivery.group), delivery.entry_id, error)
            # IDLE past the visibility timeout makes the next XAUTOCLAIM pick it up; JUSTID keeps the
            # delivery counter as is (that reclaim will count the retry).
            pipe.xclaim(
                delivery.stream,
                delivery.group,
                delivery.consumer or "spr-retry",
                0,
                [delivery.entry_id],
                idle=self.config.visibility_timeout_ms + 1,
                justid=True,
            )
            pipe.execute()
            return False

    def _dead_letter(self, delivery: Delivery, error: str, deliveries: int) -> bool:
        moved = self._dead_letter_script(
            keys=[delivery.stream, self.dead_stream, errors_key(delivery.stream, delivery.group)],
            args=[
                delivery.group,
                delivery.entry_id,
                delivery.item_id,
                delivery.data,
                error,
                deliveries,
                datetime.now(UTC).isoformat(),
                NO_ERROR_RECORDED,
                "",
            ],
        )
        return bool(moved)

    # -- operating ---------------------------------------------------------------------------------

    def status(self, streams: Sequence[str] = PIPELINE_STREAMS) -> QueueStatus:
        """Lengths, consumer groups, pending, lag, oldest idle and recent rate, and dead letters."""
        with translate_redis_errors(self.url):
            return collect_status(self._client, self._raw, streams, self.dead_stream)

    def group_info(self, stream: str, group: str) -> GroupInfo | None:
        """One consumer group's counters (pending, lag, ...); None when it does not exist."""
        with translate_redis_errors(self.url):
            return next((info for info in read_groups(self._client, stream) if info.name == group), None)

    def remove_stale_consumers(self, stream: str, group: str, idle_s: float | None = None) -> list[str]:
        """Delete consumers of ``group`` idle over ``idle_s`` (default ``config.stale_consumer_s``) that
        hold no pending entry; returns their names (see :func:`consumers.remove_stale_consumers`)."""
        idle = self.config.stale_consumer_s if idle_s is None else idle_s
        with translate_redis_errors(self.url):
            return remove_stale_consumers(self._client, stream, group, idle)

    def dead_letters(self, limit: int = 20) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first; a damaged one is listed with ``malformed`` set."""
        with translate_redis_errors(self.url):
            entries: Any = self._raw.xrevrange(self.dead_stream, count=limit) or []
        return [DeadLetter.from_raw(entry_id, fields) for entry_id, fields in entries]

    def trim(self, stream: str) -> int:
        """Delete entries every consumer group has finished; returns how many were removed.

        Never removes an entry that is pending or not yet delivered in some group; a stream without
        groups is left alone. Nothing calls this automatically: run it from an operator job when
        stream memory matters. Item ids stay in the de-duplication set.
        """
        with translate_redis_errors(self.url):
            min_id = safe_trim_id(self._client, stream)
            if min_id is None:
                return 0
            return int(self._client.xtrim(stream, minid=min_id, approximate=False))

    # -- reading back (operators, the demo, tests) -------------------------------------------------

    def items(self, stream: str, model: type[T], *, page: int = 500) -> Iterator[tuple[str, T]]:
        """Every item still in ``stream``, oldest first, as ``(item_id, parsed payload)``.

        A read-only scan (XRANGE in pages): it delivers nothing to any group and acks nothing. Entries
        that cannot be decoded or are not valid as ``model`` are skipped, counted in ``items_skipped``
        and logged once at the end (their consumers dead-letter them).
        """
        self.items_skipped = 0

        def skipped() -> None:
            self.items_skipped += 1

        with translate_redis_errors(self.url):
            yield from scan_items(self._raw, stream, model, page=page, on_skip=skipped)

    def record_outcome(self, ledger: str, item_id: str, outcome: str) -> None:
        """Record what became of ``item_id`` (e.g. "pair", "no pair: margin too small").

        Idempotent per item: a redelivered item overwrites its own record.
        """
        with translate_redis_errors(self.url):
            self._client.hset(outcomes_key(ledger), item_id, outcome)

    def outcomes(self, ledger: str) -> dict[str, int]:
        """How many items ended in each outcome, for one ledger."""
        with translate_redis_errors(self.url):
            values = self._client.hvals(outcomes_key(ledger))
        counts: dict[str, int] = {}
        for value in values:
            counts[str(value)] = counts.get(str(value), 0) + 1
        return counts
