"""Reading streams back without consuming them, and the idempotent outcome ledger."""

from __future__ import annotations

from pydantic import BaseModel
from spr.shared.queue import STREAM_TASKS, Queue


class Item(BaseModel):
    n: int


def test_items_pages_through_the_stream_without_delivering(redis_url: str) -> None:
    queue = Queue.from_url(redis_url)
    for n in range(7):
        queue.publish(STREAM_TASKS, f"i{n}", Item(n=n))
    got = list(queue.items(STREAM_TASKS, Item, page=3))
    assert [(item_id, item.n) for item_id, item in got] == [(f"i{n}", n) for n in range(7)]
    # a read-only scan: a group created afterwards still receives everything
    assert len(queue.consume(STREAM_TASKS, "g", "c", count=10, block_ms=0)) == 7


def test_outcomes_count_each_item_once(redis_url: str) -> None:
    queue = Queue.from_url(redis_url)
    queue.record_outcome("scorer", "g1", "pair")
    queue.record_outcome("scorer", "g2", "no pair: margin too small")
    queue.record_outcome("scorer", "g1", "pair")  # a redelivered group
    assert queue.outcomes("scorer") == {"pair": 1, "no pair: margin too small": 1}
    assert queue.outcomes("other") == {}
