"""Pulling pairs from spr:pairs into the spool against a real Redis: ack after fsync, dedup, rejects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import BaseModel
from spr.shared.queue import GROUP_TRAINERS as TRAINER_GROUP
from spr.shared.queue import STREAM_PAIRS, Delivery, Queue, QueueConfig
from spr.shared.schemas import PreferencePair
from spr.trainer.length import PairLengthMeasurer
from spr.trainer.pull import Puller
from spr.trainer.spool import Spool
from trainer_fixtures import MakePair

FAST = QueueConfig(visibility_timeout_s=0.05, max_deliveries=2, block_ms=20)


class AckAuditQueue(Queue):
    """A real queue that, at every ack, re-reads the spool from disk to see the pair is already there."""

    def __init__(self, url: str, config: QueueConfig, spool_dir: Path) -> None:
        super().__init__(redis.Redis.from_url(url, decode_responses=True), config, url=url)
        self.spool_dir = spool_dir
        self.acked_after_write: list[str] = []

    def ack(self, delivery: Delivery) -> None:
        pair_id = PreferencePair.model_validate_json(delivery.data).pair_id
        on_disk = Spool(self.spool_dir, readonly=True)
        assert pair_id in on_disk, f"{pair_id} acknowledged before it was written to the spool"
        self.acked_after_write.append(pair_id)
        super().ack(delivery)


def _group(queue: Queue) -> Any:
    stream = queue.status([STREAM_PAIRS]).streams[0]
    return next(group for group in stream.groups if group.name == TRAINER_GROUP)


def _publish(queue: Queue, pairs: list[PreferencePair]) -> None:
    for pair in pairs:
        assert queue.publish(STREAM_PAIRS, pair.pair_id, pair)


@pytest.fixture(scope="module")
def measure(tiny_qwen2vl: Path) -> PairLengthMeasurer:
    from transformers import AutoProcessor

    return PairLengthMeasurer(AutoProcessor.from_pretrained(tiny_qwen2vl))  # type: ignore[no-untyped-call]


def test_pairs_are_spooled_acked_after_the_write_deduplicated_and_long_ones_rejected(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair, measure: PairLengthMeasurer
) -> None:
    spool_dir = tmp_path / "spool"
    queue = AckAuditQueue(redis_url, FAST, spool_dir)
    pairs = [pairs_factory(i) for i in range(6)]
    too_long = pairs_factory(6, chosen="an extremely long description " * 60)
    _publish(queue, [*pairs, too_long])
    # The same pair re-published under another item id (e.g. a re-scored group): only the spool dedups.
    assert queue.publish(STREAM_PAIRS, "again-" + pairs[0].pair_id, pairs[0])
    with Spool(spool_dir, data_root=data_root, max_length=256, measure=measure) as spool:
        stats = Puller(queue, spool, consumer="t1", until_empty=True, batch_size=3, block_ms=20).run()
        assert len(spool) == 6
    assert stats.stopped == "drained"
    assert (stats.delivered, stats.added, stats.duplicates, stats.rejected, stats.acked) == (8, 6, 1, 1, 8)
    assert len(queue.acked_after_write) == 8
    group = _group(queue)
    assert (group.pending, group.lag) == (0, 0)
    reopened = Spool(spool_dir, readonly=True)
    assert [r.pair.pair_id for r in reopened.records()] == [p.pair_id for p in pairs]
    assert [(r["pair_id"], r["reason"]) for r in reopened.rejects()] == [(too_long.pair_id, "too_long")]
    assert all(r.tokens is not None and r.tokens <= 256 for r in reopened.records())


def test_a_trainer_killed_between_spool_write_and_ack_loses_and_duplicates_nothing(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    queue = Queue.from_url(redis_url, FAST)
    pairs = [pairs_factory(i) for i in range(4)]
    _publish(queue, pairs)
    # The first trainer consumes, writes the spool (fsync) and dies before acknowledging.
    deliveries = queue.consume(STREAM_PAIRS, TRAINER_GROUP, "dead-trainer", count=4, block_ms=20)
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        assert [r.status for r in spool.append_many([d.parse(PreferencePair) for d in deliveries])] == [
            "added"
        ] * 4
    assert _group(queue).pending == 4
    # The restarted trainer reclaims them once idle past the visibility timeout: duplicates, acked.
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        stats = Puller(queue, spool, consumer="new-trainer", until_empty=True, block_ms=20).run()
        assert len(spool) == 4
    assert (stats.added, stats.duplicates, stats.acked) == (0, 4, 4)
    assert _group(queue).pending == 0
    assert [r.pair.pair_id for r in Spool(tmp_path / "s", readonly=True).records()] == [
        p.pair_id for p in pairs
    ]


def test_a_trainer_restarted_under_its_name_takes_its_pending_pairs_back_at_once(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    slow = QueueConfig(visibility_timeout_s=600, block_ms=20)
    queue = Queue.from_url(redis_url, slow)
    pairs = [pairs_factory(i) for i in range(4)]
    _publish(queue, pairs)
    deliveries = queue.consume(STREAM_PAIRS, TRAINER_GROUP, "trainer-host", count=4, block_ms=20)
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        spool.append_many([d.parse(PreferencePair) for d in deliveries[:2]])  # killed mid-batch
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        stats = Puller(
            queue, spool, consumer="trainer-host", until_empty=True, timeout_s=30, block_ms=20
        ).run()
        assert len(spool) == 4
    # Not a 600 s wait for the visibility timeout: drained, the two spooled ones dropped as duplicates.
    assert (stats.stopped, stats.added, stats.duplicates, stats.acked) == ("drained", 2, 2, 4)
    assert _group(queue).pending == 0


def test_a_pair_whose_image_is_missing_is_never_acked_and_ends_dead_lettered(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    queue = Queue.from_url(redis_url, FAST)
    good = pairs_factory(0)
    lost = pairs_factory(1)
    lost = lost.model_copy(update={"image": lost.image.model_copy(update={"path": "images/gone.png"})})
    _publish(queue, [good, lost])
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        stats = Puller(queue, spool, consumer="t1", until_empty=True, block_ms=20).run()
        assert len(spool) == 1 and lost.pair_id not in spool
    assert stats.failed == FAST.max_deliveries
    assert stats.acked == 1
    letters = queue.dead_letters()
    assert [letter.item_id for letter in letters] == [lost.pair_id]
    assert "not found" in letters[0].error


def test_an_invalid_payload_is_dead_lettered_at_once(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    class NotAPair(BaseModel):
        hello: str

    queue = Queue.from_url(redis_url, FAST)
    queue.publish(STREAM_PAIRS, "poison", NotAPair(hello="world"))
    _publish(queue, [pairs_factory(0)])
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        stats = Puller(queue, spool, consumer="t1", until_empty=True, block_ms=20).run()
    assert (stats.invalid, stats.added, stats.failed) == (1, 1, 0)
    assert [letter.item_id for letter in queue.dead_letters()] == ["poison"]


def test_a_non_utf8_entry_is_dead_lettered_with_its_bytes_and_pulling_goes_on(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    from spr.shared.queue.entries import fields_from_b64

    queue = Queue.from_url(redis_url, FAST)
    poison = {b"item_id": b"bad", b"data": b"\x80\x81 not text"}
    redis.Redis.from_url(redis_url).xadd(STREAM_PAIRS, poison)  # type: ignore[arg-type]
    _publish(queue, [pairs_factory(0)])
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        stats = Puller(queue, spool, consumer="t1", until_empty=True, block_ms=20).run()
        assert len(spool) == 1
    assert (stats.invalid, stats.added, stats.stopped) == (1, 1, "drained")
    [letter] = queue.dead_letters()
    assert letter.raw is not None and fields_from_b64(letter.raw) == poison
    assert _group(queue).pending == 0


def test_max_pairs_stops_with_that_many_spooled_and_the_rest_undelivered(
    redis_url: str, tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    queue = Queue.from_url(redis_url, FAST)
    _publish(queue, [pairs_factory(i) for i in range(5)])
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        stats = Puller(queue, spool, consumer="t1", max_pairs=3, batch_size=2, block_ms=20).run()
        assert (stats.stopped, len(spool)) == ("max_pairs", 3)
        group = _group(queue)
        assert (group.pending, group.lag) == (0, 2)
        # The same command again with a larger target pulls only what is missing.
        again = Puller(queue, spool, consumer="t1", max_pairs=5, batch_size=2, block_ms=20).run()
        assert (again.stopped, again.added, len(spool)) == ("max_pairs", 2, 5)


def test_timeout_stops_an_idle_pull(redis_url: str, tmp_path: Path, data_root: Path) -> None:
    queue = Queue.from_url(redis_url, FAST)
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        stats = Puller(queue, spool, consumer="t1", timeout_s=0.3, block_ms=50).run()
    assert stats.stopped == "timeout"
    assert 0.3 <= stats.seconds < 5.0
