"""Box geometry: IoU, clipping, the localization score S_loc and box refinement.

Every box is ``(x1, y1, x2, y2)`` in absolute pixels of the *original* image (floats, ``x1 < x2``,
``y1 < y2``); see :mod:`spr.shared.schemas`. Model box syntaxes never reach this module.

``localization_score`` and ``refine_boxes`` sit on the scorer's hot path (every candidate of every
region, a handful of boxes each), computed together by ``localize_and_refine`` and, for a region's
candidates at once, ``localize_and_refine_many`` (about 8 µs per candidate for 5 GT x 6 predictions
on one core of the development machine). For so few boxes a plain Python loop beats numpy's fixed
per-call cost, so they switch to ``iou_matrix`` only for larger inputs; scipy is imported only for the
optional one-to-one ("hungarian") mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from spr.shared.schemas import BoxT, LocalizationMode

BoxesLike = Sequence[BoxT] | npt.NDArray[np.float64]

__all__ = [
    "BoxT",
    "Localization",
    "Match",
    "clip_box",
    "iou_matrix",
    "localization_score",
    "localize_and_refine",
    "localize_and_refine_many",
    "refine_boxes",
]


@dataclass(frozen=True)
class Match:
    """One GT object counted by S_loc: its index, the prediction's index and their IoU (>= threshold)."""

    gt: int
    pred: int
    iou: float


@dataclass(frozen=True)
class Localization:
    """S_loc in [0, 1] and the (GT, prediction) pairs that contributed to it, ordered by GT index."""

    score: float
    matches: list[Match]


def _as_array(boxes: BoxesLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4) as [x1, y1, x2, y2] pixels, got shape {arr.shape}")
    return arr


def iou_matrix(a: BoxesLike, b: BoxesLike) -> npt.NDArray[np.float64]:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Boxes are ``(x1, y1, x2, y2)`` pixels in one coordinate space. Returns a float64 array of shape
    ``(len(a), len(b))`` with values in [0, 1]; a pair whose union is empty (two zero-area boxes) has
    IoU 0. Any positive union is divided by as it is, however small: boxes a millionth of a pixel wide
    get the same IoUs as the scorer's Python loop gives them.
    """
    aa = _as_array(a)
    bb = _as_array(b)
    # Broadcasting (n, 1) columns against (m,) rows: one pass, no Python loop.
    ax1, ay1, ax2, ay2 = (col[:, None] for col in aa.T)
    bx1, by1, bx2, by2 = bb.T
    inter = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0.0) * np.maximum(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0.0
    )
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    # Divide only where the union is positive (a floor such as max(union, 1e-12) would shrink the IoU
    # of boxes with sides under ~1e-5 px, and disagree with the Python loop of _paper_pass).
    iou: npt.NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
    return iou


def clip_box(box: BoxT, width: float, height: float) -> BoxT | None:
    """Clip a pixel box to the image ``[0, width] x [0, height]``; ``None`` when nothing is left."""
    x1 = min(max(float(box[0]), 0.0), float(width))
    y1 = min(max(float(box[1]), 0.0), float(height))
    x2 = min(max(float(box[2]), 0.0), float(width))
    y2 = min(max(float(box[3]), 0.0), float(height))
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1, y1, x2, y2)


def localization_score(
    gt: Sequence[BoxT],
    pred: Sequence[BoxT],
    *,
    threshold: float = 0.5,
    mode: LocalizationMode = "paper",
) -> Localization:
    """The localization score ``S_loc`` of predicted boxes against a region's GT boxes.

    ``p[i, j] = IoU(gt_i, pred_j)`` when that IoU is >= ``threshold``, else 0, and ``n = len(gt)``.

    - ``"paper"``: ``S_loc = (1/n) * sum_i max_j p[i, j]``, the paper's formula. One prediction may
      count for several GT objects; extra predictions are not penalised. Each counted GT is matched to
      its best prediction (the lowest index on ties).
    - ``"hungarian"``: predictions and GT objects are matched one-to-one so that the sum of ``p`` is
      maximal (scipy's ``linear_sum_assignment``); ``S_loc = (1/n) * sum over matched pairs of p``.

    Boxes are pixels of one image. With no GT objects the score is 0.0 (nothing to localize earns no
    reward); with no predictions it is 0.0 too. Returns the score in [0, 1] and the matches (pairs
    with ``p > 0`` only), ordered by GT index.
    """
    _check_threshold(threshold)
    n = len(gt)
    if n == 0 or len(pred) == 0:
        return Localization(0.0, [])
    if mode == "paper":
        if n * len(pred) <= _PYTHON_PAIRS_MAX:
            return _paper_pass(gt, _with_areas(gt), pred, threshold, threshold)[0]
        # max_j p[i, j] is the best IoU when it reaches the threshold, else 0.
        best, best_iou = _best_matches(gt, pred)
        matches = [
            Match(i, j, v)
            for i, (j, v) in enumerate(zip(best, best_iou, strict=True))
            if v >= threshold and v > 0.0
        ]
        return Localization(sum(m.iou for m in matches) / n, matches)
    if mode == "hungarian":
        from scipy.optimize import linear_sum_assignment

        p = iou_matrix(gt, pred)
        p[p < threshold] = 0.0
        # Assigning on p (not raw IoU) maximises the score itself: a pair below the threshold is
        # worth nothing, so it must not pull a prediction away from a GT where it would count.
        rows, cols = linear_sum_assignment(p, maximize=True)
        matches = [
            Match(i, j, v)
            for i, j, v in zip(rows.tolist(), cols.tolist(), p[rows, cols].tolist(), strict=True)
            if v > 0.0
        ]
        return Localization(sum(m.iou for m in matches) / n, matches)
    raise ValueError(f"unknown localization mode {mode!r}: use 'paper' or 'hungarian'")


def refine_boxes(pred: Sequence[BoxT], gt: Sequence[BoxT], *, threshold: float = 0.5) -> list[BoxT]:
    """Refinement: each predicted box whose IoU with some GT box is > ``threshold`` (strictly) becomes
    its best-IoU GT box (the lowest GT index on ties); every other box is kept as it is.

    Boxes are pixels of one image. Returns one box per prediction, in the same order (the very box
    objects given, taken from ``gt`` or ``pred``).
    """
    _check_threshold(threshold)
    if len(pred) == 0 or len(gt) == 0:
        return list(pred)
    if len(pred) * len(gt) <= _PYTHON_PAIRS_MAX:
        return _paper_pass(gt, _with_areas(gt), pred, threshold, threshold)[1]
    best, best_iou = _best_matches(pred, gt)
    return [gt[j] if v > threshold else box for box, j, v in zip(pred, best, best_iou, strict=True)]


def localize_and_refine(
    gt: Sequence[BoxT],
    pred: Sequence[BoxT],
    *,
    threshold: float = 0.5,
    mode: LocalizationMode = "paper",
    refine_threshold: float = 0.5,
) -> tuple[Localization, list[BoxT]]:
    """``localization_score(gt, pred)`` and ``refine_boxes(pred, gt)`` from one IoU computation.

    The scorer needs both for every candidate; computing the GT x prediction IoUs once instead of
    twice is most of the saving on its hot path. Same units, rules and results as the two functions.
    """
    _check_threshold(refine_threshold)
    if mode != "paper" or len(gt) * len(pred) > _PYTHON_PAIRS_MAX or not gt or not pred:
        loc = localization_score(gt, pred, threshold=threshold, mode=mode)
        return loc, refine_boxes(pred, gt, threshold=refine_threshold)
    _check_threshold(threshold)
    return _paper_pass(gt, _with_areas(gt), pred, threshold, refine_threshold)


def localize_and_refine_many(
    gt: Sequence[BoxT],
    preds: Sequence[Sequence[BoxT]],
    *,
    threshold: float = 0.5,
    mode: LocalizationMode = "paper",
    refine_threshold: float = 0.5,
) -> list[tuple[Localization, list[BoxT]]]:
    """``localize_and_refine(gt, pred)`` for each ``pred`` of ``preds``: a region's candidates share its GT.

    Identical results (and errors), computed with the same arithmetic; the GT boxes' areas are computed
    once for the whole group. Boxes are pixels of one image. Not vectorised with numpy: for a group of
    8 candidates of 6 boxes against 5 GT boxes, building the arrays and turning them back into
    per-candidate results costs more than this loop (measured on one core).
    """
    if not preds:
        return []
    _check_threshold(refine_threshold)  # in localize_and_refine's order: the same error first
    _check_threshold(threshold)
    if mode != "paper" or not gt:
        return [
            localize_and_refine(gt, pred, threshold=threshold, mode=mode, refine_threshold=refine_threshold)
            for pred in preds
        ]
    gt_rows = _with_areas(gt)
    limit = _PYTHON_PAIRS_MAX // len(gt)
    return [
        _paper_pass(gt, gt_rows, pred, threshold, refine_threshold)
        if 0 < len(pred) <= limit
        else localize_and_refine(gt, pred, threshold=threshold, mode=mode, refine_threshold=refine_threshold)
        for pred in preds
    ]


_Row = tuple[int, float, float, float, float, float]


def _with_areas(boxes: Sequence[BoxT]) -> list[_Row]:
    """(index, x1, y1, x2, y2, area) per box: the index rides along, cheaper than enumerate() per pair."""
    return [(i, x1, y1, x2, y2, (x2 - x1) * (y2 - y1)) for i, (x1, y1, x2, y2) in enumerate(boxes)]


def _paper_pass(
    gt: Sequence[BoxT],
    gt_rows: list[_Row],
    pred: Sequence[BoxT],
    threshold: float,
    refine_threshold: float,
) -> tuple[Localization, list[BoxT]]:
    """S_loc ("paper") and refinement in one pass over the GT x prediction pairs (small inputs).

    The one IoU loop in Python: ``localization_score`` and ``refine_boxes`` use it for small inputs too
    (taking the half they need), larger inputs go to :func:`iou_matrix`.
    """
    # Each prediction's best GT (refinement) and each GT's best prediction (S_loc) are tracked at once;
    # strict ">" keeps the lowest index on ties, as localization_score and refine_boxes do.
    n = len(gt_rows)
    top = [0.0] * n
    top_j = [0] * n
    refined: list[BoxT] = []
    for j, box in enumerate(pred):
        bx1, by1, bx2, by2 = box
        area_b = (bx2 - bx1) * (by2 - by1)
        best, best_i = 0.0, 0
        for i, ax1, ay1, ax2, ay2, area_a in gt_rows:
            # Conditional expressions, not min()/max(): a builtin call costs ~10x more here.
            iw = (ax2 if ax2 < bx2 else bx2) - (ax1 if ax1 > bx1 else bx1)
            if iw <= 0.0:
                continue
            ih = (ay2 if ay2 < by2 else by2) - (ay1 if ay1 > by1 else by1)
            if ih <= 0.0:
                continue
            inter = iw * ih
            union = area_a + area_b - inter
            if union <= 0.0:
                continue
            v = inter / union
            if v > top[i]:
                top[i] = v
                top_j[i] = j
            if v > best:
                best, best_i = v, i
        refined.append(gt[best_i] if best > refine_threshold else box)
    matches: list[Match] = []
    for i, v in enumerate(top):
        if v >= threshold and v > 0.0:
            match = _new(Match)
            _set_match(match, {"gt": i, "pred": top_j[i], "iou": v})
            matches.append(match)
    loc = _new(Localization)
    # sum() as in localization_score (Python 3.12 sums floats with compensation: same call, same result).
    _set_localization(loc, {"score": sum([m.iou for m in matches]) / n, "matches": matches})
    return loc, refined


# Match and Localization made by filling their __dict__ directly, as their generated __init__ would:
# a frozen dataclass's __init__ (object.__setattr__ per field) is half the cost of a candidate's S_loc.
_new = object.__new__
_set_match = Match.__dict__["__dict__"].__set__
_set_localization = Localization.__dict__["__dict__"].__set__


# Below this many box pairs a plain Python loop beats numpy's fixed cost per call (array creation and
# a dozen ufunc calls); measured crossover on one core is 100-150 pairs of float tuples.
_PYTHON_PAIRS_MAX = 128


def _best_matches(a: Sequence[BoxT], b: Sequence[BoxT]) -> tuple[list[int], list[float]]:
    """For each box of ``a``: the index of its best-IoU box in ``b`` (lowest on ties) and that IoU.

    For inputs over ``_PYTHON_PAIRS_MAX`` pairs (smaller ones take :func:`_paper_pass`).
    """
    iou = iou_matrix(a, b)
    best = iou.argmax(axis=1)
    return best.tolist(), iou[np.arange(len(a)), best].tolist()


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"IoU threshold must be in [0, 1], got {threshold}")
