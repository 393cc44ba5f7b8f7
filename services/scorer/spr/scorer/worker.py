"""The queue worker: candidate groups in (``spr:candidates``), preference pairs out (``spr:pairs``).

Each group is scored with the same scoring object as HTTP, using the worker options from the settings
(``ScorerSettings.worker_options()``, passed to :func:`score_group`; the scoring object holds none).
The pair is published with item id = pair_id (deterministic from the task id), so a redelivered group
cannot duplicate a pair; a group without a pair is only counted and logged. Up to
``SPR_SCORER_WORKER_BATCH_GROUPS`` groups are read at once and scored with one call per model
(:mod:`spr.scorer.batch_scoring`); each is still published, then acked, on its own. ``run_worker`` acks after
the handler returns, i.e. after the pair is written. A group that can never be scored (invalid payload,
missing image, ...) goes to ``spr:dead`` at once; other failures are retried, then dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from spr.scorer.batch_scoring import score_plans
from spr.scorer.errors import InputError
from spr.scorer.limits import LimitError
from spr.scorer.scoring import Scorer, ScoringInput, ScoringPlan
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


def group_input(scorer: Scorer, group: CandidateGroup, options: ScoreOptions) -> ScoringInput:
    """The scoring input of a queued group (its image opened lazily from the data root).

    Raises PermanentError for a group that can never be scored (image missing or not matching the
    task's recorded size, over a count limit).
    """
    if scorer.images is None:
        raise PermanentError("the scorer has no image store (SPR_DATA_ROOT) to open task images")
    task = group.task
    try:
        if scorer.limits is not None:
            scorer.limits.check_counts(len(group.candidates), len(task.objects), field_prefix="")
        image, key = scorer.images.open_path_keyed(task.image.path, field="task.image.path")
        if image.size != (task.image.width, task.image.height):
            raise InputError(
                f"image is {image.size[0]}x{image.size[1]} pixels but the task records "
                f"{task.image.width}x{task.image.height}: boxes would be in the wrong space",
                field="task.image",
            )
    except InputError as exc:
        raise _permanent(exc) from exc
    return ScoringInput(
        image=image,
        region=task.region,
        objects=task.objects,
        candidates=[(c.id, c.text) for c in group.candidates],
        format=group.format,
        options=options,
        resized_size=group.resized_size,
        image_key=key,
    )


def _permanent(exc: InputError) -> PermanentError:
    return PermanentError(f"{exc.field}: {exc.message}" if exc.field else exc.message)


def group_result(
    scorer: Scorer, group: CandidateGroup, response: ScoreResponse, options: ScoreOptions
) -> GroupResult:
    """The pair to publish (its provenance hashes ``options`` with the scorer's model ids), or why none."""
    if response.pair is None:
        return GroupResult(None, response.pair_skipped_reason, response)
    pair = response.pair.to_preference_pair(group, response.candidates, scorer.settings_hash(options))
    return GroupResult(pair, None, response)


def score_group(scorer: Scorer, group: CandidateGroup, options: ScoreOptions) -> GroupResult:
    """Score a queued candidate group with ``options`` (the worker's, from the settings).

    Raises PermanentError for a group that can never be scored (image missing or not matching the
    task's recorded size, a region outside the image, lambda > 0 without a semantic model).
    """
    inputs = group_input(scorer, group, options)
    try:
        response = scorer.score(inputs, field_prefix="")
    except InputError as exc:
        raise _permanent(exc) from exc
    return group_result(scorer, group, response, options)


def score_groups(
    scorer: Scorer, groups: Sequence[CandidateGroup], options: ScoreOptions
) -> dict[int, GroupResult]:
    """Score several groups with one call per model; the results of those that could be scored, by index.

    A group missing from the result (unusable input) is left to :func:`score_group`, which raises its
    error alone. A model failure raises for the whole batch.
    """
    planned: list[tuple[ScoringInput, ScoringPlan]] = []
    indexes: list[int] = []
    for index, group in enumerate(groups):
        try:
            inputs = group_input(scorer, group, options)
            planned.append((inputs, scorer.plan(inputs)))
        except (PermanentError, InputError):
            continue
        indexes.append(index)
    results: dict[int, GroupResult] = {}
    for index, response in zip(indexes, score_plans(scorer, planned), strict=True):
        if isinstance(response, ScoreResponse):
            results[index] = group_result(scorer, groups[index], response, options)
    return results


def entry_age_s(entry_id: str, now: float | None = None) -> float:
    """Seconds since a stream entry was added (its id starts with the Redis time in milliseconds)."""
    try:
        added_ms = int(entry_id.split("-", 1)[0])
    except ValueError:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - added_ms / 1000.0)


class GroupHandler:
    """Scores delivered candidate groups and publishes their pairs (the ``run_worker`` handler).

    :meth:`prepare` scores a read batch with one call per model; :meth:`__call__` then publishes each
    group's pair (scoring alone a group the batch could not score, which raises its own error there).
    """

    def __init__(self, scorer: Scorer, queue: Queue, metrics: ScorerMetrics, options: ScoreOptions) -> None:
        self.scorer = scorer
        self.options = options
        self.queue = queue
        self.metrics = metrics
        self._prepared: dict[str, tuple[CandidateGroup, GroupResult]] = {}

    def prepare(self, deliveries: list[Delivery]) -> None:
        """Score the groups of ``deliveries`` together; never raises (on failure each scores alone)."""
        self._prepared.clear()
        if len(deliveries) < 2 or (self.scorer.semantic is None and self.scorer.detector is None):
            # No model call to share: planning every group before publishing any measured 5-10 % slower
            # than one by one (bench/scorer_queue.py); the batched read alone still saves Redis round trips.
            return
        parsed: list[tuple[str, CandidateGroup]] = []
        for delivery in deliveries:
            try:
                parsed.append((delivery.entry_id, delivery.parse(CandidateGroup)))
            except ValidationError:
                continue  # dead-lettered when its turn comes
        try:
            results = score_groups(self.scorer, [group for _, group in parsed], self.options)
        except Exception as exc:
            # One group can break a shared forward: score each alone so only that one fails.
            logger.warning("batch of %d groups failed (%s); scoring them one by one", len(parsed), exc)
            return
        for index, result in results.items():
            entry_id, group = parsed[index]
            self._prepared[entry_id] = (group, result)

    def __call__(self, delivery: Delivery) -> None:
        self.metrics.queue_lag.observe(entry_age_s(delivery.entry_id))
        prepared = self._prepared.pop(delivery.entry_id, None)
        try:
            if prepared is not None:
                group, result = prepared
            else:
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
            batch_size=settings.scorer_worker_batch_groups,
            prepare=handler.prepare,
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
