"""Workers ride out Redis outages, prune stale consumers, and raise the dead-letter alarm."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import BaseModel
from spr.shared.queue import PermanentError, Queue, QueueConfig, run_worker
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.reconnect import RedisLost
from spr.shared.redis_server import LocalRedis


class Item(BaseModel):
    n: int


def _wait_until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)  # polling a condition with a deadline


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A private persistent (AOF) server this test may kill and restart on the same port."""
    server = LocalRedis(tmp_path / "redis", persistent=True)
    server.start()
    yield server
    server.stop()


def test_worker_survives_a_redis_restart_without_loss_or_duplicates(
    own_redis: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    config = QueueConfig(block_ms=50, visibility_timeout_s=0.5, reconnect_timeout_s=30)
    queue = Queue.from_url(own_redis.url, config)
    for n in range(20):
        queue.publish("in", f"i{n}", Item(n=n))
    gate = threading.Event()

    def handle(delivery: Delivery) -> None:
        item = delivery.parse(Item)
        if item.n == 10:
            gate.wait(30)  # hold item 10 while Redis goes away under the worker
        queue.publish("out", delivery.item_id, item)

    stop = threading.Event()
    result: list[object] = []
    worker = threading.Thread(
        target=lambda: result.append(run_worker(queue, "in", "g", "w1", handle, stop=stop, idle_exit_s=3))
    )
    with caplog.at_level(logging.INFO, logger="spr.shared.queue.reconnect"):
        worker.start()
        _wait_until(lambda: int(redis.Redis.from_url(own_redis.url).xlen("out")) == 10)
        own_redis.stop()  # graceful: the AOF holds everything acknowledged so far
        gate.set()  # publishing item 10 now fails: the worker waits for Redis
        _wait_until(lambda: "lost Redis" in caplog.text)
        own_redis.start()
        worker.join(60)
    assert not worker.is_alive()
    check = redis.Redis.from_url(own_redis.url, decode_responses=True)
    outputs = [fields["item_id"] for _, fields in check.xrange("out")]
    assert sorted(outputs) == sorted(f"i{n}" for n in range(20))  # none lost, none twice
    assert check.xpending("in", "g")["pending"] == 0
    lost = [r for r in caplog.records if "lost Redis" in r.getMessage()]
    back = [r for r in caplog.records if "is back after" in r.getMessage()]
    assert len(lost) == 1 and len(back) == 1  # one line per outage, not one per retry


def test_worker_gives_up_after_the_reconnect_timeout_with_a_clear_error(own_redis: LocalRedis) -> None:
    queue = Queue.from_url(own_redis.url, QueueConfig(block_ms=20, reconnect_timeout_s=0.5))
    queue.ensure_group("in", "g")
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(RedisLost) as caught:
        run_worker(queue, "in", "g", "w1", lambda d: None, stop=threading.Event())
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert own_redis.url in message and "SPR_QUEUE_RECONNECT_TIMEOUT_S" in message
    assert "restart this worker" in message


def test_stale_consumers_without_pending_entries_are_removed(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    queue.publish("in", "a", Item(n=1))
    queue.ensure_group("in", "g")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xgroup_createconsumer("in", "g", "gone-idle")
    [held] = queue.consume("in", "g", "holds-one")  # died holding an entry: must stay
    time.sleep(0.15)  # consumers must be idle for longer than the threshold below
    assert queue.remove_stale_consumers("in", "g", idle_s=0.1) == ["gone-idle"]
    assert [c["name"] for c in client.xinfo_consumers("in", "g")] == ["holds-one"]
    assert queue.remove_stale_consumers("missing", "g", idle_s=0.1) == []
    queue.ack(held)
    # The status shows consumers per group with their idle time.
    [stream] = queue.status(["in"]).streams
    [consumer] = stream.groups[0].consumer_list
    assert consumer.name == "holds-one" and consumer.pending == 0 and consumer.idle_ms >= 100


def test_worker_prunes_stale_consumers_at_start(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0, stale_consumer_s=0.05))
    queue.ensure_group("in", "g")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    for name in ("old-1", "old-2"):
        client.xgroup_createconsumer("in", "g", name)
    time.sleep(0.1)  # older than stale_consumer_s
    run_worker(queue, "in", "g", "w1", lambda d: None, stop=threading.Event(), idle_exit_s=0.02)
    names = {c["name"] for c in client.xinfo_consumers("in", "g")}
    assert not names & {"old-1", "old-2"}


def test_alarm_fires_once_per_window_when_most_entries_are_dead_lettered(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0, alarm_window=4, alarm_fraction=0.5))
    for n in range(10):
        queue.publish("in", f"i{n}", Item(n=n))

    def handle(delivery: Delivery) -> None:
        if delivery.parse(Item).n % 5 != 0:  # 8 of 10 fail for good
            raise PermanentError(f"image images/{delivery.item_id}.png not found under /wrong/root")

    with caplog.at_level(logging.ERROR):
        stats = run_worker(queue, "in", "g", "w1", handle, stop=threading.Event(), idle_exit_s=0.05)
    assert (stats.processed, stats.dead_lettered) == (2, 8)
    alarms = [r for r in caplog.records if r.levelno == logging.ERROR]
    # Windows: [0..3] 3 dead -> alarm; [4..7] 3 dead -> alarm; [8, 9] not full yet.
    assert len(alarms) == 2
    text = alarms[0].getMessage()
    assert "ALARM in/g dead-lettered 3 of its last 4 entries" in text
    assert "PermanentError: image images/i1.png not found" in text
    assert "spr queue requeue --stream in" in text


def test_alarm_stays_quiet_when_failures_are_rare(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0, alarm_window=4, alarm_fraction=0.5))
    for n in range(12):
        queue.publish("in", f"i{n}", Item(n=n))

    def handle(delivery: Delivery) -> None:
        if delivery.parse(Item).n % 2:  # half: not more than the fraction
            raise PermanentError("odd")

    with caplog.at_level(logging.ERROR):
        run_worker(queue, "in", "g", "w1", handle, stop=threading.Event(), idle_exit_s=0.05)
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]
