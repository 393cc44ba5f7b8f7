"""`spr train --from_queue` with nothing to train names the cause, read from the pipeline's records."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import BaseModel
from spr.cli.main import main
from spr.shared.queue import STREAM_CANDIDATES, STREAM_TASKS, PermanentError, Queue, QueueConfig, run_worker
from spr.shared.queue.delivery import Delivery
from trainer_fixtures import TINY_CONFIG


class Task(BaseModel):
    n: int


def _train(model: Path, output_dir: Path, url: str, data_root: Path) -> int:
    return main(
        [
            "train",
            "--config",
            str(TINY_CONFIG),
            "--model",
            str(model),
            "--output_dir",
            str(output_dir),
            "--from_queue",
            "--until_empty",
            "--redis_url",
            url,
            "--data_root",
            str(data_root),
        ]
    )


def test_no_pairs_names_dead_lettered_tasks_and_skipped_groups(
    redis_url: str, tmp_path: Path, tiny_qwen2vl: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    for n in range(4):
        queue.publish(STREAM_TASKS, f"t{n}", Task(n=n))
    queue.publish(STREAM_CANDIDATES, "g-t9", Task(n=9))

    def wrong_root(delivery: Delivery) -> None:
        if delivery.item_id != "t3":
            raise PermanentError("image images/a.png not found under /wrong/root")

    run_worker(queue, STREAM_TASKS, "generators", "g1", wrong_root, stop=threading.Event(), idle_exit_s=0.05)
    queue.record_outcome("scorer", "g-t3", "no pair: best and worst candidates score the same")

    assert _train(tiny_qwen2vl, tmp_path / "out", redis_url, data_root) != 0
    err = capsys.readouterr().err
    assert "no pairs to train (pulling stopped: drained, 0 delivered)" in err
    assert (
        "3 of 4 region tasks on spr:tasks were dead-lettered (3 x 'PermanentError: image images/a.png not "
        "found under /wrong/root'): fix the cause, then `spr queue requeue --stream spr:tasks`"
    ) in err
    assert "the scorer made no pair for 1 candidate groups" in err
    assert "1 candidate groups on spr:candidates are not finished yet" in err
    assert "Traceback" not in err


def test_an_empty_pipeline_says_to_publish_tasks(redis_url: str) -> None:
    from spr.shared.queue.diagnosis import pipeline_causes

    with Queue.from_url(redis_url, QueueConfig(block_ms=0)) as queue:
        assert pipeline_causes(queue) == [
            "nothing was ever published on spr:tasks: publish region tasks with `spr regions ...`"
        ]
