"""The queue worker on a real Redis: groups in, pairs out, poison to the dead letters, no duplicates."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from scorer_fixtures import CUP, DOG, FAR_DOG, LOOSE_CUP, candidate_group, grounded
from spr.cli.main import main
from spr.scorer.loading import load_scorer
from spr.scorer.scoring import Scorer
from spr.scorer.semantic import SemanticScorer
from spr.scorer.settings import ScorerSettings, SettingsError
from spr.scorer.telemetry import ScorerMetrics
from spr.scorer.worker import run_scorer_worker
from spr.shared.queue import GROUP_SCORERS as GROUP
from spr.shared.queue import LEDGER_SCORER as LEDGER
from spr.shared.queue import STREAM_CANDIDATES, STREAM_PAIRS, Queue, QueueConfig
from spr.shared.schemas import PreferencePair
from spr.shared.scoring_api import HealthResponse

Settings = Callable[..., ScorerSettings]

GOOD = [
    grounded("ferret", "a cup", LOOSE_CUP) + " and " + grounded("ferret", "a dog", DOG),
    grounded("ferret", "a dog", FAR_DOG),
]
# Both texts refine to S_loc 0.5 and the worst as written is 0.476: margin 0.024 < 0.05.
CLOSE = [grounded("ferret", "a cup", CUP), grounded("ferret", "a cup", (50, 100, 260, 500))]


def read_pairs(queue: Queue) -> list[PreferencePair]:
    deliveries = queue.consume(STREAM_PAIRS, "test-reader", "reader", count=100, block_ms=0)
    return [d.parse(PreferencePair) for d in deliveries]


def test_worker_turns_groups_into_pairs_and_survives_poison(make_settings: Settings, redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url, scorer_lambda=0.0, queue_block_ms=50)
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    queue.publish(STREAM_CANDIDATES, "g-one", candidate_group("one", GOOD))
    queue.publish(STREAM_CANDIDATES, "g-poison", HealthResponse(status="ok"))  # not a CandidateGroup
    queue.publish(STREAM_CANDIDATES, "g-missing", candidate_group("missing", GOOD, image="nope.png"))
    queue.publish(STREAM_CANDIDATES, "g-close", candidate_group("close", CLOSE))
    queue.publish(STREAM_CANDIDATES, "g-two", candidate_group("two", GOOD[::-1]))
    metrics = ScorerMetrics()

    stats = run_scorer_worker(
        settings, scorer=load_scorer(settings), queue=queue, metrics=metrics, max_items=5
    )

    assert (stats.processed, stats.dead_lettered, stats.failed) == (3, 2, 0)
    pairs = {p.task_id: p for p in read_pairs(queue)}
    assert set(pairs) == {"one", "two"}
    one = pairs["one"]
    assert one.pair_id == PreferencePair.make_id("one")
    assert one.chosen.refined and one.chosen.candidate_id == "one-c0"
    assert one.chosen.text == grounded("ferret", "a cup", CUP) + " and " + grounded("ferret", "a dog", DOG)
    assert one.chosen.scores.localization == pytest.approx(1.0) and one.chosen.scores.semantic is None
    assert (one.rejected.candidate_id, one.rejected.text, one.rejected.refined) == ("one-c1", GOOD[1], False)
    assert one.rejected.scores.total == 0.0
    assert one.margin == pytest.approx(1.0)
    assert one.prompt.startswith("Describe the region")
    assert one.provenance.generator_model == "tiny-qwen2vl"
    assert one.provenance.scorer_settings_hash == load_scorer(settings).settings_hash(
        settings.worker_options()
    )

    dead = {d.item_id: d for d in queue.dead_letters()}
    assert set(dead) == {"g-poison", "g-missing"}
    assert "CandidateGroup" in dead["g-poison"].error
    assert "task.image.path" in dead["g-missing"].error and "no image" in dead["g-missing"].error
    status = queue.status()
    candidates = next(s for s in status.streams if s.name == STREAM_CANDIDATES)
    assert [(g.name, g.pending, g.lag) for g in candidates.groups] == [(GROUP, 0, 0)]

    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert 'spr_scorer_pairs_made_total{source="queue"} 2.0' in text
    assert 'spr_scorer_pairs_skipped_total{reason="margin too small",source="queue"} 1.0' in text
    assert "spr_scorer_groups_dead_lettered_total 2.0" in text
    assert "spr_scorer_queue_lag_seconds_count 5.0" in text
    # the outcome ledger counts the same, per group id, for operators and `spr demo`
    assert queue.outcomes(LEDGER) == {"pair": 2, "no pair: margin too small": 1}


def test_redelivered_group_does_not_duplicate_its_pair(make_settings: Settings, redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url, scorer_lambda=0.0)
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    group = candidate_group("again", GOOD)
    # The same group reaching the stream twice (e.g. a generator retried after a crash).
    queue.publish(STREAM_CANDIDATES, "g-again", group)
    queue.publish(STREAM_CANDIDATES, "g-again-retry", group)
    stats = run_scorer_worker(
        settings,
        scorer=Scorer(images=load_scorer(settings).images),
        queue=queue,
        max_items=2,
    )
    assert stats.processed == 2
    assert [p.pair_id for p in read_pairs(queue)] == [PreferencePair.make_id("again")]
    assert queue.outcomes(LEDGER) == {"pair": 1}


def test_worker_scores_with_the_semantic_model(
    make_settings: Settings, redis_url: str, clip: SemanticScorer
) -> None:
    settings = make_settings(redis_url=redis_url, queue_block_ms=50)  # lambda 0.8
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    queue.publish(STREAM_CANDIDATES, "g-sem", candidate_group("sem", GOOD))
    base = load_scorer(settings)
    scorer = Scorer(semantic=clip, images=base.images)
    stop = threading.Event()
    worker = threading.Thread(
        target=run_scorer_worker, args=(settings,), kwargs={"scorer": scorer, "queue": queue, "stop": stop}
    )
    worker.start()
    try:
        deadline = time.monotonic() + 30
        pairs: list[PreferencePair] = []
        while not pairs and time.monotonic() < deadline:
            pairs = read_pairs(queue)
            if not pairs:
                time.sleep(0.05)  # polling the pairs stream, with a deadline
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    assert len(pairs) == 1
    chosen = pairs[0].chosen.scores
    assert chosen.semantic is not None
    assert chosen.total == pytest.approx(0.8 * chosen.semantic + 0.2 * chosen.localization)


def test_worker_command(monkeypatch: pytest.MonkeyPatch, redis_url: str, scorer_data_root: object) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv("SPR_SCORER_LAMBDA", "0")
    monkeypatch.setenv("SPR_REDIS_URL", redis_url)
    monkeypatch.setenv("SPR_DATA_ROOT", str(scorer_data_root))
    monkeypatch.setenv("SPR_QUEUE_BLOCK_MS", "50")
    Queue.from_url(redis_url).publish(STREAM_CANDIDATES, "g-cli", candidate_group("cli", GOOD))
    assert main(["scorer", "worker", "--idle-exit", "0.3"]) == 0
    assert [p.task_id for p in read_pairs(Queue.from_url(redis_url))] == ["cli"]


def test_worker_refuses_settings_that_would_dead_letter_every_group(
    make_settings: Settings, redis_url: str
) -> None:
    no_model = make_settings(redis_url=redis_url)  # lambda 0.8 without a semantic model
    with pytest.raises(SettingsError, match=r"SPR_SCORER_LAMBDA=0\.8 needs a semantic model"):
        run_scorer_worker(no_model, scorer=load_scorer(no_model), max_items=1)
    no_root = make_settings(redis_url=redis_url, data_root=None, scorer_lambda=0.0)
    with pytest.raises(SettingsError, match="SPR_DATA_ROOT"):
        run_scorer_worker(no_root, scorer=load_scorer(no_root), max_items=1)
