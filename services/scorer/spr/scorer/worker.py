"""The queue worker: candidate groups in (``spr:candidates``), preference pairs out (``spr:pairs``).

Each group is scored with the same scoring object as HTTP, using the worker options from the settings
(``ScorerSettings.worker_options()``, passed to :func:`score_group`; the scoring object holds none).
The pair is published with item id = pair_id (deterministic from the task id), so a redelivered group
cannot duplicate a pair; a group without a pair is only counted and logged. ``run_worker`` acks after
the handler returns, i.e. after the pair is written. A group that can never be scored (invalid payload,
missing image, ...) goes to ``spr:dead`` at once; other failures are retried, then dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from pydantic import ValidationError
from spr.scorer.errors import InputError
from spr.scorer.limits import LimitError
from spr.scorer.scoring import Scorer, ScoringInput
from spr.scorer.settings import ScorerSettings, SettingsError
from spr.scorer.telemetry import ScorerMetrics
from spr.shared.progress import DEFAULT_INTERVAL_S, Progress
from spr.shared.queue import (
    GROUP_SCORERS,
    LEDGER_SCORER,
    NO_PAIR_OUTCOME_PREFIX,
    PAIR_OUTCOME,
    STREAM_CANDIDATES,
    STREAM_PAIRS,
    Delivery,
    PermanentError,
    Queue,
    WorkerStats,
    run_worker,
)
from spr.shared.schemas import CandidateGroup, PreferencePair
from spr.shared.scoring_api import ScoreOptions, ScoreResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupResult:
    """A scored candidate group: the pair (or why none) and the full per-candidate scores."""

    pair: PreferencePair | None
    skipped_reason: str | None
    scores: ScoreResponse


def score_group(scorer: Scorer, group: CandidateGroup, options: ScoreOptions) -> GroupResult:
    """Score a queued candidate group with ``options`` (the worker's, from the settings).

    The pair is ready to publish; its provenance hashes ``options`` with the scorer's model ids.

    Raises PermanentError for a group that can never be scored (image missing or not matching the
    task's recorded size, a region outside the image, lambda > 0 without a semantic model).
    """
    if scorer.images is None:
        raise PermanentError("the scorer has no image store (SPR_DATA_ROOT) to open task images")
    task = group.task
    try:
        if scorer.limits is not None:
            scorer.limits.check_counts(len(group.candidates), len(task.objects), field_prefix="")
        image = scorer.images.open_path(task.image.path, field="task.image.path")
        if image.size != (task.image.width, task.image.height):
            raise InputError(
                f"image is {image.size[0]}x{image.size[1]} pixels but the task records "
                f"{task.image.width}x{task.image.height}: boxes would be in the wrong space",
                field="task.image",
            )
        response = scorer.score(
            ScoringInput(
                image=image,
                region=task.region,
                objects=task.objects,
                candidates=[(c.id, c.text) for c in group.candidates],
                format=group.format,
                options=options,
                resized_size=group.resized_size,
            ),
            field_prefix="",
        )
    except InputError as exc:
        raise PermanentError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from exc
    if response.pair is None:
        return GroupResult(None, response.pair_skipped_reason, response)
    pair = response.pair.to_preference_pair(group, response.candidates, scorer.settings_hash(options))
    return GroupResult(pair, None, response)


def entry_age_s(entry_id: str, now: float | None = None) -> float:
    """Seconds since a stream entry was added (its id starts with the Redis time in milliseconds)."""
    try:
        added_ms = int(entry_id.split("-", 1)[0])
    except ValueError:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - added_ms / 1000.0)


class GroupHandler:
    """Scores one delivered candidate group and publishes its pair (the ``run_worker`` handler)."""

    def __init__(self, scorer: Scorer, queue: Queue, metrics: ScorerMetrics, options: ScoreOptions) -> None:
        self.scorer = scorer
        self.options = options
        self.queue = queue
        self.metrics = metrics

    def __call__(self, delivery: Delivery) -> None:
        self.metrics.queue_lag.observe(entry_age_s(delivery.entry_id))
        try:
            group = delivery.parse(CandidateGroup)
            result = score_group(self.scorer, group, self.options)
        except (ValidationError, PermanentError) as exc:
            self.metrics.dead_lettered.inc()
            if isinstance(exc.__cause__, LimitError):  # over SPR_SCORER_MAX_*: dead-lettered with it
                self.metrics.refused.labels("queue", exc.__cause__.reason).inc()
            raise
        self.metrics.observe_scores("queue", result.scores)
        if result.pair is None:
            logger.info("no pair for task %s: %s", group.task.task_id, result.skipped_reason)
            self.queue.record_outcome(
                LEDGER_SCORER, group.group_id, f"{NO_PAIR_OUTCOME_PREFIX}{result.skipped_reason}"
            )
            return
        if self.queue.publish(STREAM_PAIRS, result.pair.pair_id, result.pair):
            logger.debug("pair %s (margin %.3f) published", result.pair.pair_id, result.pair.margin)
        else:
            logger.info("pair %s was already published (redelivered group)", result.pair.pair_id)
        # After the pair is written: a crash in between leaves the group pending, and its redelivery
        # finds the pair de-duplicated and records the outcome then.
        self.queue.record_outcome(LEDGER_SCORER, group.group_id, PAIR_OUTCOME)


def check_offline_scoring(settings: ScorerSettings, scorer: Scorer, command: str) -> None:
    """Refuse, before reading any group, a configuration that would fail every group."""
    if settings.data_root is None:
        raise SettingsError(
            f"SPR_DATA_ROOT: is required by the {command} (task image paths are relative to it)"
        )
    if settings.scorer_lambda > 0.0 and scorer.semantic is None:
        raise SettingsError(
            f"SPR_SCORER_LAMBDA={settings.scorer_lambda} needs a semantic model: set "
            "SPR_SCORER_SEMANTIC_MODEL to a local CLIP folder, or SPR_SCORER_LAMBDA=0 for localization only"
        )


def run_scorer_worker(
    settings: ScorerSettings,
    *,
    scorer: Scorer,
    queue: Queue | None = None,
    metrics: ScorerMetrics | None = None,
    stop: threading.Event | None = None,
    max_items: int | None = None,
    idle_exit_s: float | None = None,
    progress_interval_s: float = DEFAULT_INTERVAL_S,
) -> WorkerStats:
    """Consume ``spr:candidates`` as ``settings.scorer_consumer`` of group 'scorers' until stopped.

    Returns when ``stop`` is set, after ``max_items`` groups, or after ``idle_exit_s`` idle seconds.
    Progress (groups done, rate, ETA from the backlog) goes to the terminal or, every
    ``progress_interval_s`` seconds, to the log.
    """
    check_offline_scoring(settings, scorer, "scorer worker")
    if queue is None:
        queue = Queue.from_url(settings.require_redis_url("scorer worker"), settings.queue_config())
    handler = GroupHandler(scorer, queue, metrics or ScorerMetrics(), settings.worker_options())
    progress = Progress(
        "scorer",
        unit="group",
        interval_s=progress_interval_s,
        remaining=lambda: queue.backlog(STREAM_CANDIDATES),
    )

    def handle(delivery: Delivery) -> None:
        handler(delivery)
        progress.update()

    with progress.start_heartbeat():
        stats = run_worker(
            queue,
            STREAM_CANDIDATES,
            GROUP_SCORERS,
            settings.scorer_consumer,
            handle,
            stop=stop or threading.Event(),
            max_items=max_items,
            idle_exit_s=idle_exit_s,
        )
    logger.info(
        "scorer worker %s done: %d processed, %d failed, %d dead-lettered",
        settings.scorer_consumer,
        stats.processed,
        stats.failed,
        stats.dead_lettered,
    )
    return stats
