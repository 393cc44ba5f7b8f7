"""Queue basics against a real private Redis: publish/consume/ack, de-dup, retries, poison, trim, status."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
import redis
from pydantic import BaseModel, ConfigDict
from spr.shared.queue import (
    STREAM_DEAD,
    STREAM_TASKS,
    PermanentError,
    Queue,
    QueueConfig,
    QueueStatus,
    QueueUnavailable,
    run_worker,
)
from spr.shared.queue.deadletter import NO_ERROR_RECORDED
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.topology import errors_key


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")  # like the wire schemas

    n: int


class Other(BaseModel):
    label: str


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def _entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """The fields of every entry of ``stream``, oldest first."""
    raw: Any = client.xrange(stream)
    return [dict(fields) for _, fields in raw]


def test_publish_consume_ack(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    # Published before the group exists: the group starts at id 0, so it still gets them.
    assert queue.publish("in", "a", Item(n=1))
    assert queue.publish("in", "b", Item(n=2))

    first = queue.consume("in", "g", "c1", count=1)
    assert [d.item_id for d in first] == ["a"]
    assert first[0].parse(Item) == Item(n=1)
    assert first[0].deliveries == 1
    assert (first[0].stream, first[0].group) == ("in", "g")
    queue.ack(first[0])

    second = queue.consume("in", "g", "c1", count=5)
    assert [d.parse(Item).n for d in second] == [2]
    assert queue.backlog("in") == 1  # delivered, not acked
    queue.ack(second[0])
    assert queue.backlog("in") == 0
    assert queue.consume("in", "g", "c1", count=5) == []


def test_publish_deduplicates_item_ids_per_stream(redis_url: str) -> None:
    queue = Queue.from_url(redis_url)
    assert queue.publish("in", "same", Item(n=1)) is True
    assert queue.publish("in", "same", Item(n=2)) is False
    assert queue.publish("other", "same", Item(n=3)) is True
    client = _client(redis_url)
    assert client.xlen("in") == 1
    assert client.xlen("other") == 1
    # Still de-duplicated after the entry itself is consumed and trimmed away.
    for delivery in queue.consume("in", "g", "c", count=5, block_ms=0):
        queue.ack(delivery)
    assert queue.trim("in") == 1
    assert queue.publish("in", "same", Item(n=4)) is False


def test_failures_retry_at_once_then_dead_letter_with_error(redis_url: str) -> None:
    # A 30 s visibility timeout: the test finishing quickly shows fail() makes the retry immediate.
    queue = Queue.from_url(redis_url, QueueConfig(visibility_timeout_s=30, max_deliveries=3, block_ms=20))
    queue.publish("in", "bad", Item(n=1))
    seen: list[int] = []

    def handle(delivery: Delivery) -> None:
        seen.append(delivery.deliveries)
        raise RuntimeError(f"boom on {delivery.item_id}")

    stats = run_worker(queue, "in", "g", "w", handle, stop=threading.Event(), max_items=3, idle_exit_s=5)

    assert seen == [1, 2, 3]
    assert (stats.processed, stats.failed, stats.dead_lettered) == (0, 2, 1)
    [letter] = queue.dead_letters()
    assert letter.error == "RuntimeError: boom on bad"
    assert (letter.stream, letter.group, letter.item_id, letter.deliveries) == ("in", "g", "bad", 3)
    assert letter.data == Item(n=1).model_dump_json()
    client = _client(redis_url)
    assert client.xpending("in", "g")["pending"] == 0
    assert client.hlen(errors_key("in", "g")) == 0
    # Dead-lettered exactly once: a second attempt on the same (now acked) entry writes nothing.
    assert queue.fail(Delivery("in", "g", letter.entry_id, "bad", letter.data, 3), "again") is False
    assert client.xlen(STREAM_DEAD) == 1


def test_entry_whose_consumers_keep_dying_is_dead_lettered_on_reclaim(redis_url: str) -> None:
    # Visibility 0: every consume reclaims what earlier consumers left pending.
    queue = Queue.from_url(redis_url, QueueConfig(visibility_timeout_s=0, max_deliveries=2, block_ms=0))
    queue.publish("in", "x", Item(n=7))
    assert [d.deliveries for d in queue.consume("in", "g", "dies-1")] == [1]
    assert [d.deliveries for d in queue.consume("in", "g", "dies-2")] == [2]
    assert queue.consume("in", "g", "survivor") == []

    [letter] = queue.dead_letters()
    assert letter.error == NO_ERROR_RECORDED
    assert (letter.item_id, letter.deliveries) == ("x", 2)
    assert _client(redis_url).xpending("in", "g")["pending"] == 0


def test_recorded_error_travels_with_reclaim_dead_letter(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(visibility_timeout_s=0, max_deliveries=2, block_ms=0))
    queue.publish("in", "x", Item(n=7))
    [first] = queue.consume("in", "g", "c")
    assert queue.fail(first, "ValueError: upstream said no") is False
    assert [d.deliveries for d in queue.consume("in", "g", "dies")] == [2]
    assert queue.consume("in", "g", "c") == []
    [letter] = queue.dead_letters()
    assert letter.error == "ValueError: upstream said no"


def test_poison_and_permanent_errors_dead_letter_at_once_and_worker_goes_on(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(max_deliveries=5, block_ms=20))
    queue.publish("in", "ok-1", Item(n=1))
    queue.publish("in", "poison", Other(label="not an item"))
    queue.publish("in", "refused", Item(n=-1))
    queue.publish("in", "ok-2", Item(n=2))
    done: list[int] = []

    def handle(delivery: Delivery) -> None:
        item = delivery.parse(Item)
        if item.n < 0:
            raise PermanentError("negative n can never be processed")
        done.append(item.n)

    stats = run_worker(queue, "in", "g", "w", handle, stop=threading.Event(), max_items=4, idle_exit_s=5)

    assert done == [1, 2]
    assert (stats.processed, stats.failed, stats.dead_lettered) == (2, 0, 2)
    letters = {letter.item_id: letter for letter in queue.dead_letters()}
    assert letters["poison"].deliveries == 1
    assert letters["poison"].error.startswith("invalid Item payload (2 errors)")
    assert "n: Field required" in letters["poison"].error
    assert "label: Extra inputs are not permitted" in letters["poison"].error
    assert "not an item" not in letters["poison"].error  # errors list fields, never payload values
    assert letters["refused"].error == "PermanentError: negative n can never be processed"


def test_worker_stops_on_event_and_when_idle(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=20))
    stop = threading.Event()
    stop.set()
    assert run_worker(queue, "in", "g", "w", lambda d: None, stop=stop).handled == 0
    stats = run_worker(queue, "in", "g", "w", lambda d: None, stop=threading.Event(), idle_exit_s=0.05)
    assert stats.handled == 0


def test_trim_never_removes_pending_or_undelivered_entries(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    client = _client(redis_url)
    for n in range(6):
        queue.publish("in", f"i{n}", Item(n=n))
    assert queue.trim("in") == 0  # no group yet: nobody has consumed anything

    deliveries = queue.consume("in", "g", "c", count=4)  # i0..i3 delivered
    queue.ack(deliveries[0])
    queue.ack(deliveries[2])  # i1 and i3 stay pending
    queue.ensure_group("in", "late")  # a second group that has read nothing
    assert queue.trim("in") == 0
    assert client.xlen("in") == 6

    for delivery in queue.consume("in", "late", "c", count=6):
        queue.ack(delivery)
    assert queue.trim("in") == 1  # only i0: i1 is still pending in g
    remaining = [fields["item_id"] for fields in _entries(client, "in")]
    assert remaining == ["i1", "i2", "i3", "i4", "i5"]
    # Pending entries are still there to be retried and acked.
    queue.ack(deliveries[1])
    assert queue.trim("in") == 2  # i1, i2; i3 still pending stops it
    queue.ack(deliveries[3])
    assert queue.trim("in") == 1  # i3; i4, i5 never delivered to g
    assert [fields["item_id"] for fields in _entries(client, "in")] == ["i4", "i5"]


def test_status_reports_lengths_pending_lag_idle_rate_and_dead_letters(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    for n in range(3):
        queue.publish(STREAM_TASKS, f"t{n}", Item(n=n))
    first, _second = queue.consume(STREAM_TASKS, "generator", "gen-1", count=2)
    queue.ack(first)
    queue.publish("in", "p", Other(label="x"))
    [poison] = queue.consume("in", "g", "c")
    queue.fail(poison, "bad", permanent=True)

    status = queue.status()

    assert [s.name for s in status.streams] == ["spr:tasks", "spr:candidates", "spr:pairs"]
    tasks = status.streams[0]
    assert (tasks.length, tasks.added_last_minute, tasks.added_last_minute_capped) == (3, 3, False)
    [group] = tasks.groups
    assert (group.name, group.consumers, group.pending, group.lag) == ("generator", 1, 1, 1)
    assert group.oldest_pending_idle_ms is not None and group.oldest_pending_idle_ms >= 0
    assert status.streams[1].length == 0 and status.streams[1].groups == []
    assert status.dead_letters == 1
    assert QueueStatus.model_validate_json(status.model_dump_json()) == status


def test_unreachable_redis_raises_queue_unavailable_naming_url(redis_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://:secret@127.0.0.1:{port}/0"  # nothing listens there once the socket is closed
    queue = Queue.from_url(url)
    with pytest.raises(QueueUnavailable) as info:
        queue.publish("in", "a", Item(n=1))
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "redis-server" in message
    assert "secret" not in message
    with pytest.raises(QueueUnavailable):
        queue.ping()
