"""Backpressure: a publisher waits while the stream's backlog is above the limit, and resumes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest
import redis
from pydantic import BaseModel
from spr.shared.queue import BackpressureTimeout, Queue, QueueConfig

LIMIT = 3


class Item(BaseModel):
    n: int


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)  # polling a condition, with a deadline


def test_backlog_counts_undelivered_and_pending_of_the_slowest_group(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    assert queue.backlog("in") == 0
    for n in range(4):
        queue.publish("in", f"i{n}", Item(n=n), backpressure=False)
    assert queue.backlog("in") == 4  # no group yet: every entry waits
    fast = queue.consume("in", "fast", "c", count=4)
    for delivery in fast[:3]:
        queue.ack(delivery)
    assert queue.backlog("in") == 1  # "fast": 0 undelivered + 1 pending
    queue.ensure_group("in", "slow")
    assert queue.backlog("in") == 4  # "slow" has read nothing: it sets the backlog
    slow = queue.consume("in", "slow", "c", count=2)
    assert queue.backlog("in") == 4  # 2 undelivered + 2 pending
    queue.ack(fast[3])
    for delivery in slow:
        queue.ack(delivery)
    assert queue.backlog("in") == 2


def test_publish_times_out_while_backlog_stays_above_limit(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(backlog_limit=LIMIT, backpressure_timeout_s=0.2))
    for n in range(LIMIT + 1):
        assert queue.publish("in", f"i{n}", Item(n=n))  # waits only while backlog > limit
    started = time.monotonic()
    with pytest.raises(BackpressureTimeout, match=r"backlog of 4 entries \(limit 3\)"):
        queue.publish("in", "blocked", Item(n=99))
    assert time.monotonic() - started >= 0.2
    assert redis.Redis.from_url(redis_url).xlen("in") == LIMIT + 1
    # A duplicate is refused at once, without waiting for room.
    assert queue.publish("in", "i0", Item(n=0)) is False


def test_publisher_blocks_until_a_consumer_drains(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.queue.backpressure")
    queue = Queue.from_url(redis_url, QueueConfig(backlog_limit=LIMIT, block_ms=0))
    client = redis.Redis.from_url(redis_url)
    for n in range(LIMIT + 1):
        queue.publish("in", f"i{n}", Item(n=n))
    queue.ensure_group("in", "g")

    results: list[bool] = []
    publisher = threading.Thread(target=lambda: results.append(queue.publish("in", "late", Item(n=99))))
    publisher.start()
    try:
        _wait_until(
            lambda: any("waits: backlog 4 > limit 3" in r.getMessage() for r in caplog.records), "wait"
        )
        assert client.xlen("in") == LIMIT + 1  # held back
        assert publisher.is_alive()

        # Delivered but not acked still counts: backlog stays 4.
        deliveries = queue.consume("in", "g", "c", count=2)
        assert queue.backlog("in") == LIMIT + 1
        assert publisher.is_alive()
        queue.ack(deliveries[0])  # backlog 3 = limit: room again

        _wait_until(lambda: not publisher.is_alive(), "the publisher to resume")
    finally:
        publisher.join(timeout=5)
    assert results == [True]
    assert client.xlen("in") == LIMIT + 2
