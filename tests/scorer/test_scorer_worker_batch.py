"""The queue worker's batches: several groups per model call, each group acked or dead-lettered alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from PIL import Image
from scorer_fixtures import CUP, DOG, FAR_DOG, LOOSE_CUP, candidate_group, grounded
from spr.scorer.loading import load_scorer
from spr.scorer.scoring import Scorer
from spr.scorer.semantic import RegionEmbedding, SemanticScorer
from spr.scorer.settings import ScorerSettings
from spr.scorer.worker import run_scorer_worker, score_group
from spr.shared.boxes import BoxT
from spr.shared.queue import LEDGER_SCORER, STREAM_CANDIDATES, STREAM_PAIRS, Queue, QueueConfig
from spr.shared.schemas import CandidateGroup, PreferencePair
from spr.shared.scoring_api import HealthResponse

Settings = Callable[..., ScorerSettings]

TEXTS = [
    [grounded("ferret", "a cup", LOOSE_CUP) + " and " + grounded("ferret", "a dog", DOG), "a dog sleeping"],
    [grounded("ferret", "a dog", FAR_DOG), grounded("ferret", "a red cup", CUP) + " on a table"],
    [grounded("ferret", "a blue wall", (0, 0, 990, 990)), grounded("ferret", "a cup", CUP)],
    ["nothing grounded here", grounded("ferret", "a green dog", DOG) + " and a cup"],
]


def groups() -> list[CandidateGroup]:
    return [candidate_group(f"b{i}", texts) for i, texts in enumerate(TEXTS)]


def read_pairs(queue: Queue) -> dict[str, PreferencePair]:
    deliveries = queue.consume(STREAM_PAIRS, "test-reader", "reader", count=100, block_ms=0)
    return {p.task_id: p for p in (d.parse(PreferencePair) for d in deliveries)}


class CountingClip:
    """Records the size of every image-side forward of ``clip`` (monkeypatched on the instance)."""

    def __init__(self, clip: SemanticScorer, monkeypatch: pytest.MonkeyPatch, *, fail_on: BoxT | None = None):
        self.calls: list[int] = []
        original = clip.embed_regions

        def embed_regions(items: Sequence[tuple[Image.Image, BoxT]]) -> list[RegionEmbedding]:
            self.calls.append(len(items))
            if fail_on is not None and any(region == fail_on for _, region in items):
                raise RuntimeError("this region breaks the forward")
            return original(items)

        monkeypatch.setattr(clip, "embed_regions", embed_regions)


def run(settings: ScorerSettings, scorer: Scorer, queue: Queue, items: int) -> Any:
    return run_scorer_worker(settings, scorer=scorer, queue=queue, max_items=items)


def test_one_model_call_for_a_batch_gives_the_pairs_of_one_group_at_a_time(
    make_settings: Settings, redis_url: str, clip: SemanticScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(redis_url=redis_url, queue_block_ms=50, scorer_worker_batch_groups=8)
    scorer = Scorer(semantic=clip, images=load_scorer(settings).images)
    alone = {g.task.task_id: score_group(scorer, g, settings.worker_options()) for g in groups()}
    counting = CountingClip(clip, monkeypatch)
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    for group in groups():
        queue.publish(STREAM_CANDIDATES, group.group_id, group)

    stats = run(settings, scorer, queue, len(TEXTS))

    assert (stats.processed, stats.failed, stats.dead_lettered) == (len(TEXTS), 0, 0)
    assert counting.calls == [len(TEXTS)]  # every region in one image-side forward
    pairs = read_pairs(queue)
    expected = {task_id: r.pair for task_id, r in alone.items() if r.pair is not None}
    assert set(pairs) == set(expected) and len(pairs) >= 2
    for task_id, pair in pairs.items():
        want = expected[task_id]
        assert (pair.chosen.candidate_id, pair.chosen.text, pair.chosen.refined) == (
            want.chosen.candidate_id,
            want.chosen.text,
            want.chosen.refined,
        )
        assert (pair.rejected.candidate_id, pair.rejected.text) == (
            want.rejected.candidate_id,
            want.rejected.text,
        )
        assert pair.margin == pytest.approx(want.margin, abs=1e-4)
        assert pair.chosen.scores.semantic == pytest.approx(want.chosen.scores.semantic, abs=1e-4)
    status = queue.status()
    candidates = next(s for s in status.streams if s.name == STREAM_CANDIDATES)
    assert [(g.pending, g.lag) for g in candidates.groups] == [(0, 0)]


def test_a_poison_group_in_a_batch_is_dead_lettered_alone(
    make_settings: Settings, redis_url: str, clip: SemanticScorer
) -> None:
    settings = make_settings(redis_url=redis_url, queue_block_ms=50, scorer_worker_batch_groups=8)
    scorer = Scorer(semantic=clip, images=load_scorer(settings).images)
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50))
    good = groups()
    queue.publish(STREAM_CANDIDATES, "g0", good[0])
    queue.publish(STREAM_CANDIDATES, "g-poison", HealthResponse(status="ok"))  # not a CandidateGroup
    queue.publish(STREAM_CANDIDATES, "g1", good[1])
    queue.publish(STREAM_CANDIDATES, "g-text", candidate_group("text", TEXTS[0], image="not-an-image.png"))
    queue.publish(STREAM_CANDIDATES, "g3", good[3])

    stats = run(settings, scorer, queue, 5)

    assert (stats.processed, stats.dead_lettered, stats.failed) == (3, 2, 0)
    assert {d.item_id for d in queue.dead_letters()} == {"g-poison", "g-text"}
    alone = [score_group(scorer, good[i], settings.worker_options()) for i in (0, 1, 3)]
    assert set(read_pairs(queue)) == {r.pair.task_id for r in alone if r.pair is not None}


def test_a_group_that_breaks_the_shared_forward_fails_alone(
    make_settings: Settings, redis_url: str, clip: SemanticScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(redis_url=redis_url, queue_block_ms=50, scorer_worker_batch_groups=8)
    scorer = Scorer(semantic=clip, images=load_scorer(settings).images)
    breaking = candidate_group("breaks", TEXTS[1]).model_copy(deep=True)
    breaking.task.region = (0.0, 0.0, 100.0, 50.0)
    counting = CountingClip(clip, monkeypatch, fail_on=breaking.task.region)
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=50, max_deliveries=3))
    good = groups()
    for group in (good[0], breaking, good[1]):
        queue.publish(STREAM_CANDIDATES, group.group_id, group)

    stats = run(settings, scorer, queue, 3)

    # The batch of 3 failed, then each group was scored alone: only the breaking one failed (retried).
    assert counting.calls == [3, 1, 1, 1]
    assert (stats.processed, stats.failed, stats.dead_lettered) == (2, 1, 0)
    pairs = read_pairs(queue)
    assert "breaks" not in pairs and set(pairs) <= {"b0", "b1"}
    assert sum(queue.outcomes(LEDGER_SCORER).values()) == 2  # b0 and b1 recorded, pair or not
    candidates = next(s for s in queue.status().streams if s.name == STREAM_CANDIDATES)
    assert [g.pending for g in candidates.groups] == [1]  # the breaking group waits for its retry
