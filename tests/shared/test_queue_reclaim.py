"""A consumer SIGKILLed mid-batch: a live consumer reclaims the rest, with no loss and no duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any

import redis
from pydantic import BaseModel
from spr.shared.queue import Delivery, Queue, QueueConfig, run_worker

BATCH = 10
ACKED = 4

# The doomed consumer: takes a batch of BATCH, handles ACKED of them fully (output, then ack), writes
# the output of one more without acking it (the crash window between output and ack), then waits to
# be killed. Same handler logic as the live consumer below.
DOOMED = """
import sys
from pydantic import BaseModel
from spr.shared.queue import Queue, QueueConfig

class Item(BaseModel):
    n: int

url, batch, acked = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
queue = Queue.from_url(url, QueueConfig(block_ms=0))
deliveries = queue.consume("in", "workers", "doomed", count=batch)
for index, delivery in enumerate(deliveries[: acked + 1]):
    item = delivery.parse(Item)
    queue.publish("out", "out-" + delivery.item_id, Item(n=item.n * 10))
    if index < acked:
        queue.ack(delivery)
print(len(deliveries), flush=True)
sys.stdin.read()
"""


class Item(BaseModel):
    n: int


def _entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """The fields of every entry of ``stream``, oldest first."""
    raw: Any = client.xrange(stream)
    return [dict(fields) for _, fields in raw]


def test_killed_consumer_entries_are_reclaimed_without_loss_or_duplicate(redis_url: str) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(visibility_timeout_s=0.2, block_ms=50))
    for n in range(BATCH):
        assert queue.publish("in", f"in-{n}", Item(n=n))

    doomed = subprocess.Popen(
        [sys.executable, "-c", DOOMED, redis_url, str(BATCH), str(ACKED)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert doomed.stdout is not None
        assert doomed.stdout.readline().strip() == str(BATCH)
    finally:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    assert doomed.returncode == -signal.SIGKILL

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pending = client.xpending("in", "workers")
    assert pending["pending"] == BATCH - ACKED
    assert pending["consumers"] == [{"name": "doomed", "pending": BATCH - ACKED}]
    assert client.xlen("out") == ACKED + 1

    seen: list[int] = []

    def handle(delivery: Delivery) -> None:
        seen.append(delivery.deliveries)
        item = delivery.parse(Item)
        queue.publish("out", "out-" + delivery.item_id, Item(n=item.n * 10))

    stats = run_worker(
        queue,
        "in",
        "workers",
        "live",
        handle,
        stop=threading.Event(),
        max_items=BATCH - ACKED,
        idle_exit_s=10,
    )

    assert (stats.processed, stats.failed, stats.dead_lettered) == (BATCH - ACKED, 0, 0)
    assert seen == [2] * (BATCH - ACKED)  # every one reclaimed from the dead consumer
    outputs = [
        (fields["item_id"], Item.model_validate_json(fields["data"]).n) for fields in _entries(client, "out")
    ]
    assert sorted(outputs) == sorted((f"out-in-{n}", n * 10) for n in range(BATCH))  # no loss, no dup
    assert client.xpending("in", "workers")["pending"] == 0
    assert queue.consume("in", "workers", "live", block_ms=0) == []
