"""Poison entries: bytes that are not UTF-8 or lack the queue's fields are dead-lettered, raw kept."""

from __future__ import annotations

import threading

import pytest
import redis
from pydantic import BaseModel
from spr.shared.queue import STREAM_DEAD, Queue, QueueConfig, run_worker
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.entries import fields_from_b64


class Item(BaseModel):
    n: int


POISON = {b"item_id": b"p\xff1", b"data": b'{"n": \xc3\x28}'}


def _raw(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def test_worker_dead_letters_non_utf8_entry_with_raw_bytes_and_goes_on(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    queue.publish("in", "a", Item(n=1))
    _raw(redis_url).xadd("in", POISON)  # type: ignore[arg-type]
    queue.publish("in", "b", Item(n=2))

    seen: list[int] = []

    def handle(delivery: Delivery) -> None:
        seen.append(delivery.parse(Item).n)

    stats = run_worker(queue, "in", "g", "c", handle, stop=threading.Event(), idle_exit_s=0.2)
    assert seen == [1, 2]
    assert stats.processed == 2
    assert stats.dead_lettered == 1  # the worker counts what the queue dead-lettered while reading
    [letter] = queue.dead_letters()
    assert letter.stream == "in" and letter.group == "g"
    assert letter.error.startswith("undecodable entry: field 'item_id' is not UTF-8")
    assert letter.item_id == "p\ufffd1"
    assert letter.raw is not None and fields_from_b64(letter.raw) == POISON
    assert letter.malformed is None
    # Nothing stays pending: the poison entry was acknowledged on its source.
    assert _raw(redis_url).xpending("in", "g")["pending"] == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"data": b'{"n": 1}'}, "entry lacks field(s) item_id"),
        ({b"item_id": b"x", b"data": b"\xff\xfe"}, "field 'data' is not UTF-8"),
        ({b"\xff": b"1", b"item_id": b"x", b"data": b"{}"}, "is not UTF-8"),
    ],
)
def test_each_kind_of_undecodable_entry_is_dead_lettered(
    redis_url: str, fields: dict[bytes, bytes], reason: str
) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    _raw(redis_url).xadd("in", fields)  # type: ignore[arg-type]
    assert queue.consume("in", "g", "c") == []
    [letter] = queue.dead_letters()
    assert reason in letter.error
    assert letter.raw is not None and fields_from_b64(letter.raw) == fields
    assert queue.undecodable[("in", "g")] == 1


def test_undecodable_entry_reclaimed_from_dead_consumer_is_dead_lettered(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0, visibility_timeout_s=0))
    raw = _raw(redis_url)
    raw.xadd("in", POISON)  # type: ignore[arg-type]
    raw.xgroup_create("in", "g", id="0")
    # A consumer of an older release read it (pending) and died before acknowledging it.
    raw.xreadgroup("g", "old", {"in": ">"})
    assert queue.consume("in", "g", "new") == []
    [letter] = queue.dead_letters()
    assert letter.deliveries == 2  # the old read and the reclaim
    assert raw.xpending("in", "g")["pending"] == 0


def test_dead_letters_lists_damaged_dead_entries(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    raw = _raw(redis_url)
    raw.xadd(STREAM_DEAD, {b"error": b"\xffbad", b"deliveries": b"many", b"time": b"yesterday"})  # type: ignore[arg-type]
    [letter] = queue.dead_letters()
    assert letter.malformed is not None
    assert "field 'error' is not UTF-8" in letter.malformed
    assert "deliveries 'many' is not a number" in letter.malformed
    assert "time 'yesterday' is not ISO 8601" in letter.malformed
    assert "missing stream, group, entry_id, item_id, data" in letter.malformed
    assert letter.time.year >= 2024  # taken from the dead entry's id


def test_items_skips_undecodable_and_invalid_entries_with_a_count(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    queue.publish("in", "a", Item(n=1))
    _raw(redis_url).xadd("in", POISON)  # type: ignore[arg-type]
    _raw(redis_url).xadd("in", {b"item_id": b"c", b"data": b'{"n": "x"}'})  # type: ignore[arg-type]
    queue.publish("in", "b", Item(n=2))
    assert [(item_id, item.n) for item_id, item in queue.items("in", Item, page=2)] == [("a", 1), ("b", 2)]
    assert queue.items_skipped == 2


def test_status_counts_streams_holding_undecodable_entries(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    _raw(redis_url).xadd("in", POISON)  # type: ignore[arg-type]
    [stream] = queue.status(["in"]).streams
    assert (stream.length, stream.added_last_minute) == (1, 1)
