"""`spr scorer worker` reports progress: groups done against the backlog, rate, and idle without noise."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from scorer_fixtures import candidate_group
from spr.scorer.loading import load_scorer
from spr.scorer.settings import ScorerSettings
from spr.scorer.worker import run_scorer_worker
from spr.shared.queue import STREAM_CANDIDATES, Queue, QueueConfig
from test_scorer_worker import CLOSE, GOOD


def test_worker_logs_progress_against_the_backlog(
    make_settings: Callable[..., ScorerSettings], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    settings = make_settings(redis_url=redis_url, scorer_lambda=0.0, queue_block_ms=50)
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    for name, texts in (("a", GOOD), ("b", CLOSE), ("c", GOOD[::-1])):
        queue.publish(STREAM_CANDIDATES, f"g-{name}", candidate_group(name, texts))

    stats = run_scorer_worker(
        settings, scorer=load_scorer(settings), queue=queue, idle_exit_s=0.5, progress_interval_s=0.05
    )

    assert stats.processed == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "spr.shared.progress"]
    assert lines[0] == "scorer: 0/3 groups (0%), elapsed 0s, working on the first group"
    assert lines[-1].startswith("scorer: 3/3 groups (100%), ") and lines[-1].endswith("waiting for work")
    assert "groups/s" in lines[-1]
    # idle at the end: the heartbeat does not repeat the same line every interval
    assert sum(line.startswith("scorer: 3/3") for line in lines) <= 2
