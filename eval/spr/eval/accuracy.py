"""Evaluation metrics: pure functions of boxes and IoUs (absolute original-image pixels throughout).

REC (one predicted box per expression): accuracy at IoU >= t for t in 0.5..0.9 (the share of examples
whose predicted box reaches IoU t with the ground truth; an answer without a box is a miss with IoU 0)
and mean IoU.

Region descriptions (many GT objects, many predicted boxes per task):

* ``mean_s_loc``: the paper's S_loc (:func:`spr.shared.boxes.localization_score`, ``paper`` mode,
  threshold 0.5) averaged over tasks;
* predictions are matched to GT objects **one-to-one** (Hungarian assignment maximising the summed IoU
  of pairs with IoU >= 0.5, the scorer's ``hungarian`` mode); ``recall`` = matched GT objects / GT
  objects and ``precision`` = matched predictions / predicted boxes, pooled over all tasks;
* ``accuracy[t]``: the share of GT objects (pooled) whose matched box has IoU >= t, so
  ``accuracy[0.5] == recall``: the REC accuracy read per object;
* ``matched_mean_iou``: mean IoU of the matched pairs (how tight the found boxes are);
* ``parse_problem_rate``: the share of answers with at least one parse problem (both benchmarks).

Rates are fractions in [0, 1]; an empty denominator gives 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from spr.shared.boxes import BoxT, iou_matrix, localization_score

THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
MATCH_THRESHOLD = 0.5


def box_iou(gt: BoxT, pred: BoxT | None) -> float:
    """IoU of two pixel boxes; 0.0 when there is no prediction."""
    if pred is None:
        return 0.0
    return float(iou_matrix([gt], [pred])[0, 0])


@dataclass(frozen=True)
class RecMetrics:
    """REC metrics of one split (or the unweighted mean of several: ``examples`` is then their sum)."""

    examples: int
    accuracy: dict[float, float]
    mean_iou: float
    no_box_rate: float
    parse_problem_rate: float


def rec_metrics(
    ious: Sequence[float],
    has_box: Sequence[bool],
    problems: Sequence[int],
    *,
    thresholds: Sequence[float] = THRESHOLDS,
) -> RecMetrics:
    """Metrics of one split from each example's IoU (0 for a miss), whether the answer had a box, and
    its number of parse problems (three sequences of the same length, one item per example)."""
    if not len(ious) == len(has_box) == len(problems):
        raise ValueError("ious, has_box and problems need one item per example")
    iou = np.asarray(ious, dtype=np.float64)
    n = len(iou)
    return RecMetrics(
        examples=n,
        accuracy={t: _share(iou >= t) for t in thresholds},
        mean_iou=float(iou.mean()) if n else 0.0,
        no_box_rate=_share(~np.asarray(has_box, dtype=bool)),
        parse_problem_rate=_share(np.asarray(problems, dtype=np.int64) > 0),
    )


def mean_rec_metrics(splits: Sequence[RecMetrics]) -> RecMetrics:
    """The unweighted mean over splits (as papers average REC splits); ``examples`` is the total."""
    if not splits:
        raise ValueError("no splits to average")
    thresholds = list(splits[0].accuracy)
    return RecMetrics(
        examples=sum(s.examples for s in splits),
        accuracy={t: float(np.mean([s.accuracy[t] for s in splits])) for t in thresholds},
        mean_iou=float(np.mean([s.mean_iou for s in splits])),
        no_box_rate=float(np.mean([s.no_box_rate for s in splits])),
        parse_problem_rate=float(np.mean([s.parse_problem_rate for s in splits])),
    )


@dataclass(frozen=True)
class RegionOutcome:
    """One region task's answer, scored: GT and predicted box counts, S_loc (paper), the IoUs of the
    one-to-one matches at IoU >= 0.5, and the answer's parse problems."""

    objects: int
    predictions: int
    s_loc: float
    matched_ious: tuple[float, ...]
    problems: int


def score_region(gt: Sequence[BoxT], pred: Sequence[BoxT], *, problems: int = 0) -> RegionOutcome:
    """Score one description: ``gt`` the region's GT boxes, ``pred`` the description's boxes (pixels)."""
    paper = localization_score(gt, pred, threshold=MATCH_THRESHOLD, mode="paper")
    one_to_one = localization_score(gt, pred, threshold=MATCH_THRESHOLD, mode="hungarian")
    return RegionOutcome(
        objects=len(gt),
        predictions=len(pred),
        s_loc=paper.score,
        matched_ious=tuple(match.iou for match in one_to_one.matches),
        problems=problems,
    )


@dataclass(frozen=True)
class RegionMetrics:
    """Region-description metrics of one split (or the unweighted mean of several)."""

    tasks: int
    objects: int
    predictions: int
    mean_s_loc: float
    recall: float
    precision: float
    accuracy: dict[float, float]
    matched_mean_iou: float
    parse_problem_rate: float


def region_metrics(
    outcomes: Sequence[RegionOutcome], *, thresholds: Sequence[float] = THRESHOLDS
) -> RegionMetrics:
    """Pool the outcomes of one split's tasks (thresholds must be >= the 0.5 matching threshold)."""
    low = [t for t in thresholds if t < MATCH_THRESHOLD]
    if low:
        raise ValueError(f"thresholds {low} are below the matching threshold {MATCH_THRESHOLD}")
    objects = sum(o.objects for o in outcomes)
    predictions = sum(o.predictions for o in outcomes)
    matched = np.asarray([iou for o in outcomes for iou in o.matched_ious], dtype=np.float64)
    return RegionMetrics(
        tasks=len(outcomes),
        objects=objects,
        predictions=predictions,
        mean_s_loc=float(np.mean([o.s_loc for o in outcomes])) if outcomes else 0.0,
        recall=len(matched) / objects if objects else 0.0,
        precision=len(matched) / predictions if predictions else 0.0,
        accuracy={t: float((matched >= t).sum()) / objects if objects else 0.0 for t in thresholds},
        matched_mean_iou=float(matched.mean()) if len(matched) else 0.0,
        parse_problem_rate=_share(np.asarray([o.problems > 0 for o in outcomes], dtype=bool)),
    )


def mean_region_metrics(splits: Sequence[RegionMetrics]) -> RegionMetrics:
    """The unweighted mean of the splits' rates; counts are totals."""
    if not splits:
        raise ValueError("no splits to average")

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    return RegionMetrics(
        tasks=sum(s.tasks for s in splits),
        objects=sum(s.objects for s in splits),
        predictions=sum(s.predictions for s in splits),
        mean_s_loc=mean([s.mean_s_loc for s in splits]),
        recall=mean([s.recall for s in splits]),
        precision=mean([s.precision for s in splits]),
        accuracy={t: mean([s.accuracy[t] for s in splits]) for t in splits[0].accuracy},
        matched_mean_iou=mean([s.matched_mean_iou for s in splits]),
        parse_problem_rate=mean([s.parse_problem_rate for s in splits]),
    )


def _share(mask: npt.NDArray[np.bool_]) -> float:
    return float(mask.mean()) if mask.size else 0.0
