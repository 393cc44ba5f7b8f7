"""The pipeline under faults: real `spr` stage processes, a real persistent Redis, nothing mocked.

One run (stage start-up dominates the time) with every fault at once:
- poison entries (not UTF-8, missing fields, valid JSON of the wrong shape) on each stream are
  dead-lettered with their raw bytes while every stage carries on;
- kill -9 of the generator, the scorer and the trainer mid-run, and Redis killed (-9, append-only
  file) and restarted on the same port while the workers stay up: every real task ends in exactly one
  outcome, every pair is spooled exactly once (or rejected with a reason), and nothing but the poison
  is dead-lettered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from spr.demo.pipeline import DemoConfig, DemoRun
from spr.shared.queue import LEDGER_SCORER as LEDGER
from spr.shared.queue import STREAM_CANDIDATES, STREAM_PAIRS, STREAM_TASKS, Queue, QueueUnavailable
from spr.shared.queue.entries import fields_from_b64
from spr.shared.redis_server import LocalRedis
from spr.shared.schemas import PreferencePair

pytestmark = pytest.mark.faults


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except QueueUnavailable:
            pass  # Redis is being restarted by the test
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling a condition with a deadline


def _spool_ids(train_dir: Path) -> list[str]:
    ids: list[str] = []
    for shard in sorted((train_dir / "spool").glob("pairs-*.jsonl")):
        ids += [json.loads(line)["pair_id"] for line in shard.read_text().splitlines() if line.strip()]
    return ids


def _reject_ids(train_dir: Path) -> set[str]:
    path = train_dir / "spool" / "rejects.jsonl"
    if not path.exists():
        return set()
    return {json.loads(line)["pair_id"] for line in path.read_text().splitlines() if line.strip()}


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[LocalRedis]:
    """A persistent (append-only file) Redis this test kills and restarts on the same port."""
    local = LocalRedis(tmp_path / "redis", persistent=True)
    local.start()
    yield local
    local.stop()


def _run(tmp_path: Path, server: LocalRedis, regions: int) -> DemoRun:
    config = DemoConfig(
        workdir=tmp_path / "demo",
        regions=regions,
        redis_url=server.url,
        samples_per_prompt=1,
        max_new_tokens=24,
        min_margin=0.0,  # every group with two different texts makes a pair
        stage_timeout_s=400.0,
        extra_env={"SPR_QUEUE_VISIBILITY_TIMEOUT_S": "4", "SPR_QUEUE_BLOCK_MS": "200"},
    )
    run = DemoRun(config)
    run.prepare()
    return run


def _outcomes(run: DemoRun) -> int:
    with run.queue() as q:
        return sum(q.outcomes(LEDGER).values())


POISON: dict[str, list[dict[bytes, bytes]]] = {
    STREAM_TASKS: [{b"item_id": b"t-\xff", b"data": b"{}"}, {b"data": b'{"task_id": "x"}'}],
    STREAM_CANDIDATES: [{b"item_id": b"g-bad", b"data": b"\xc3\x28\xa0"}],
    STREAM_PAIRS: [{b"item_id": b"p-bad", b"data": b"\x80 not text"}],
}
# Valid UTF-8 JSON of the wrong shape: dead-lettered by validation, with the payload kept as text.
WRONG_SHAPE = {STREAM_TASKS: "t-shape", STREAM_CANDIDATES: "g-shape", STREAM_PAIRS: "p-shape"}


def _add_poison(url: str) -> int:
    """Poison and wrong-shape entries on every stream; returns how many were added to spr:tasks."""
    raw = redis.Redis.from_url(url)
    for stream, entries in POISON.items():
        for fields in entries:
            raw.xadd(stream, fields)  # type: ignore[arg-type]
        raw.xadd(stream, {b"item_id": WRONG_SHAPE[stream].encode(), b"data": b'{"hello": "world"}'})
    raw.close()
    return len(POISON[STREAM_TASKS]) + 1


def _assert_only_the_poison_was_dead_lettered(url: str) -> None:
    with Queue.from_url(url) as q:
        letters = q.dead_letters(limit=100)
    assert len(letters) == sum(len(entries) + 1 for entries in POISON.values()), letters
    by_item = {letter.item_id: letter for letter in letters}
    for stream, entries in POISON.items():
        kept = [fields_from_b64(letter.raw) for letter in letters if letter.stream == stream and letter.raw]
        assert sorted(kept, key=repr) == sorted(entries, key=repr), stream
        shaped = by_item[WRONG_SHAPE[stream]]
        assert (shaped.stream, shaped.data, shaped.raw) == (stream, '{"hello": "world"}', None)
        assert shaped.error.startswith(("invalid", "not a valid PreferencePair")), shaped.error


def test_poison_and_kill_9_of_every_stage_and_of_redis_lose_and_duplicate_nothing(
    tmp_path: Path, server: LocalRedis
) -> None:
    run = _run(tmp_path, server, regions=4)
    try:
        poisoned = _add_poison(server.url)
        tasks = run.run_regions() - poisoned
        assert tasks >= 4
        generator = run.start("generator")
        scorer = run.start("scorer")
        _wait_for(lambda: _outcomes(run) >= 1, "the first scored group")
        generator.kill()  # mid-run: tasks are left, one is probably in hand
        generator = run.start("generator")

        _wait_for(lambda: _outcomes(run) >= 2, "a second scored group")
        server.kill()  # Redis dies (-9); its append-only file keeps what it had written
        time.sleep(1.0)  # the outage the workers must ride out (not a wait for a condition)
        server.start()  # same port, same folder: the streams come back from the AOF
        _wait_for(lambda: _outcomes(run) >= 3, "scoring to go on after the Redis restart")
        assert generator.poll() is None and scorer.poll() is None, "a worker exited on the Redis restart"

        scorer.kill()
        run.start("scorer")
        # Waits for both streams to drain, then stops the workers; fails if a stage exits on its own
        # (e.g. crash-looping on a poison entry).
        run.run_generate_and_score()
        with run.queue() as q:
            outcomes = q.outcomes(LEDGER)
            pairs = [pair.pair_id for _, pair in q.items(STREAM_PAIRS, PreferencePair)]
        assert sum(outcomes.values()) == tasks  # every real task ended in exactly one outcome
        assert len(pairs) == len(set(pairs)) == outcomes.get("pair", 0) >= 1

        trainer = run.start("trainer")
        _wait_for(lambda: len(_spool_ids(run.config.train_dir)) >= 1, "the trainer's spool")
        trainer.kill()
        run.run_trainer()
        spooled = _spool_ids(run.config.train_dir)
        assert len(spooled) == len(set(spooled))  # none twice
        assert set(spooled) | _reject_ids(run.config.train_dir) == set(pairs)  # none lost
        summary = json.loads((run.config.train_dir / "summary.json").read_text())
        assert summary["pairs_trained"] == len(spooled)

        _assert_only_the_poison_was_dead_lettered(server.url)
        with run.queue() as q:
            for stream_status in q.status().streams:
                for group in stream_status.groups:
                    assert group.pending == 0, (stream_status.name, group.name)
    finally:
        run.stop_all()
