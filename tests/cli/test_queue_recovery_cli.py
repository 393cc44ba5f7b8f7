"""`spr queue requeue` and `spr queue replay` against a real private Redis: the way back after a mistake."""

from __future__ import annotations

import threading

import pytest
from pydantic import BaseModel
from spr.cli.main import main
from spr.shared.queue import STREAM_CANDIDATES, STREAM_DEAD, STREAM_TASKS, PermanentError, Queue, QueueConfig
from spr.shared.queue.delivery import Delivery
from spr.shared.queue.worker import run_worker


class Item(BaseModel):
    n: int


def _dead_letter_everything(queue: Queue, stream: str = STREAM_TASKS) -> None:
    """A stage with a wrong data root: every entry fails for good."""

    def handle(delivery: Delivery) -> None:
        raise PermanentError(f"image of {delivery.item_id} not found under /wrong/root")

    run_worker(queue, stream, "stage", "w1", handle, stop=threading.Event(), idle_exit_s=0.05)


def test_requeue_puts_dead_letters_back_once(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    for n in range(3):
        queue.publish(STREAM_TASKS, f"t{n}", Item(n=n))
    queue.publish(STREAM_CANDIDATES, "g0", Item(n=9))
    _dead_letter_everything(queue)
    _dead_letter_everything(queue, STREAM_CANDIDATES)
    assert queue.status().dead_letters == 4

    assert main(["queue", "requeue", "--redis-url", redis_url, "--stream", STREAM_TASKS, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would requeue: 3 of 3 selected (3 to spr:tasks)" in out
    assert queue.status().dead_letters == 4  # a dry run changes nothing

    # Only the dead letters whose error matches, and only from spr:tasks.
    assert main(["queue", "requeue", "--redis-url", redis_url, "--stream", STREAM_TASKS, "--ids", "t1"]) == 0
    assert "requeued: 1 of 1 selected (1 to spr:tasks)" in capsys.readouterr().out
    assert main(["queue", "requeue", "--redis-url", redis_url, "--reason", "NOT FOUND under /wrong"]) == 0
    assert "requeued: 3 of 3 selected (1 to spr:candidates, 2 to spr:tasks)" in capsys.readouterr().out
    assert queue.status().dead_letters == 0
    # Running it again finds nothing: requeued letters are gone from spr:dead.
    assert main(["queue", "requeue", "--redis-url", redis_url]) == 0
    assert "requeued: 0 of 0 selected (none)" in capsys.readouterr().out

    # The cause fixed: the same consumer group now finishes every requeued entry exactly once.
    done: list[str] = []
    run_worker(
        queue,
        STREAM_TASKS,
        "stage",
        "w2",
        lambda d: done.append(d.item_id),
        stop=threading.Event(),
        idle_exit_s=0.05,
    )
    assert sorted(done) == ["t0", "t1", "t2"]


def test_requeue_skips_raw_and_damaged_dead_letters(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    raw.xadd(STREAM_TASKS, {b"item_id": b"x", b"data": b"\xff"})  # type: ignore[arg-type]
    raw.xadd(STREAM_DEAD, {b"stream": b"spr:tasks", b"note": b"hand-made"})  # type: ignore[arg-type]
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    _dead_letter_everything(queue)
    assert main(["queue", "requeue", "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    assert "kept as raw bytes" in out and "damaged dead letter" in out
    assert "requeued: 0 of 2 selected (none), 2 skipped" in out
    assert queue.status().dead_letters == 2  # nothing dropped


def test_replay_lets_dead_lettered_tasks_be_published_again(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    for n in range(3):
        queue.publish(STREAM_TASKS, f"t{n}", Item(n=n))
    queue.record_outcome("scorer", "g-t0", "no pair: margin too small")
    _dead_letter_everything(queue)
    # Re-running the producer (e.g. `spr regions`) publishes nothing: the ids are recorded.
    assert not queue.publish(STREAM_TASKS, "t0", Item(n=0))

    assert (
        main(["queue", "replay", "--redis-url", redis_url, "--stream", STREAM_TASKS, "--dead", "--dry-run"])
        == 0
    )
    assert "would forget 3 item id(s) of spr:tasks" in capsys.readouterr().out
    assert not queue.publish(STREAM_TASKS, "t0", Item(n=0))

    args = [
        "queue",
        "replay",
        "--redis-url",
        redis_url,
        "--stream",
        STREAM_TASKS,
        "--ids",
        "t0",
        "t1",
        "nope",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "forgot 2 item id(s) of spr:tasks" in out
    assert "never published on spr:tasks (left alone): nope" in out
    assert queue.publish(STREAM_TASKS, "t0", Item(n=0))
    assert queue.publish(STREAM_TASKS, "t1", Item(n=1))
    assert not queue.publish(STREAM_TASKS, "t2", Item(n=2))
    assert queue.outcomes("scorer") == {}  # the task's group outcome went with it

    assert main(["queue", "replay", "--redis-url", redis_url, "--stream", STREAM_TASKS, "--all"]) == 0
    assert "forgot 3 item id(s)" in capsys.readouterr().out
    assert queue.publish(STREAM_TASKS, "t2", Item(n=2))


def test_replay_needs_a_selection(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["queue", "replay", "--redis-url", redis_url, "--stream", STREAM_TASKS])
    assert caught.value.code == 2
    assert "one of the arguments --ids --all --dead is required" in capsys.readouterr().err
