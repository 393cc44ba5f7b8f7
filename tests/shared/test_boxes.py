"""Box geometry: IoU, clipping, S_loc (paper and one-to-one) and refinement, against hand-computed values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spr.shared import boxes as boxes_module
from spr.shared.boxes import (
    BoxT,
    Match,
    clip_box,
    iou_matrix,
    localization_score,
    localize_and_refine,
    localize_and_refine_many,
    refine_boxes,
)

# --- IoU ----------------------------------------------------------------------------------------------


def test_iou_matrix_hand_computed() -> None:
    a = [(0.0, 0.0, 10.0, 10.0)]
    b = [
        (0.0, 0.0, 10.0, 10.0),  # identical: 1
        (5.0, 0.0, 15.0, 10.0),  # inter 50, union 150: 1/3
        (0.0, 0.0, 5.0, 5.0),  # inside, a quarter of the area: 0.25
        (10.0, 0.0, 20.0, 10.0),  # touching edge: 0
        (50.0, 50.0, 60.0, 60.0),  # disjoint: 0
    ]
    got = iou_matrix(a, b)
    assert got.shape == (1, 5)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got[0], [1.0, 1 / 3, 0.25, 0.0, 0.0])


def test_iou_matrix_shapes_and_symmetry() -> None:
    a = [(0.0, 0.0, 4.0, 4.0), (2.0, 2.0, 6.0, 8.0)]
    b = np.array([(1.0, 1.0, 3.0, 5.0), (0.0, 0.0, 6.0, 8.0), (9.0, 9.0, 10.0, 10.0)])
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    np.testing.assert_allclose(iou_matrix(b, a), m.T)
    assert iou_matrix([], b).shape == (0, 3)
    assert iou_matrix(a, []).shape == (2, 0)


def test_iou_matrix_zero_area_boxes_do_not_divide_by_zero() -> None:
    assert iou_matrix([(1.0, 1.0, 1.0, 1.0)], [(1.0, 1.0, 1.0, 1.0)])[0, 0] == 0.0


def test_iou_matrix_divides_tiny_positive_unions_as_they_are() -> None:
    # Sides of 1e-7 px: the union is 1e-14 px^2, far under any floor a division guard might use.
    tiny = (5.0, 5.0, 5.0 + 1e-7, 5.0 + 1e-7)
    half = (5.0, 5.0, 5.0 + 5e-8, 5.0 + 1e-7)
    np.testing.assert_allclose(iou_matrix([tiny], [tiny, half]), [[1.0, 0.5]], rtol=1e-6)


def test_python_and_numpy_paths_agree_on_tiny_boxes() -> None:
    tiny = [(float(i), 0.0, i + 1e-7, 1e-7) for i in range(12)]  # 1e-14 px^2 each
    original = boxes_module._PYTHON_PAIRS_MAX
    try:
        boxes_module._PYTHON_PAIRS_MAX = 10**9
        loop = localization_score(tiny, tiny)
        boxes_module._PYTHON_PAIRS_MAX = -1
        vectorised = localization_score(tiny, tiny)
    finally:
        boxes_module._PYTHON_PAIRS_MAX = original
    assert loop.score == pytest.approx(1.0)
    assert vectorised.score == pytest.approx(1.0)
    assert [(m.gt, m.pred) for m in vectorised.matches] == [(i, i) for i in range(12)]


def test_iou_matrix_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        iou_matrix([(0.0, 0.0, 1.0)], [(0.0, 0.0, 1.0, 1.0)])  # type: ignore[list-item]


# --- clipping -----------------------------------------------------------------------------------------


def test_clip_box() -> None:
    assert clip_box((-5.0, -5.0, 50.0, 20.0), 40, 30) == (0.0, 0.0, 40.0, 20.0)
    assert clip_box((1.0, 2.0, 3.0, 4.0), 40, 30) == (1.0, 2.0, 3.0, 4.0)
    assert clip_box((45.0, 0.0, 60.0, 10.0), 40, 30) is None  # entirely right of the image
    assert clip_box((5.0, 5.0, 5.0, 9.0), 40, 30) is None  # zero width


# --- S_loc: the paper's formula -----------------------------------------------------------------------

G0 = (0.0, 0.0, 10.0, 10.0)
G1 = (20.0, 0.0, 30.0, 10.0)


def test_paper_score_hand_computed() -> None:
    pred = [
        (20.0, 0.0, 30.0, 8.0),  # IoU 0.8 with G1
        (0.0, 0.0, 10.0, 10.0),  # IoU 1.0 with G0
        (100.0, 100.0, 110.0, 110.0),  # extra box: not penalised
    ]
    loc = localization_score([G0, G1], pred)
    assert loc.score == pytest.approx((1.0 + 0.8) / 2)
    assert [(m.gt, m.pred) for m in loc.matches] == [(0, 1), (1, 0)]
    assert [m.iou for m in loc.matches] == pytest.approx([1.0, 0.8])


def test_paper_score_below_threshold_counts_zero() -> None:
    loc = localization_score([G0], [(5.0, 0.0, 15.0, 10.0)])  # IoU 1/3
    assert loc.score == 0.0
    assert loc.matches == []
    assert localization_score([G0], [(5.0, 0.0, 15.0, 10.0)], threshold=0.3).score == pytest.approx(1 / 3)


def test_threshold_is_inclusive_for_the_score() -> None:
    half = (0.0, 0.0, 10.0, 5.0)  # IoU with G0 exactly 0.5
    assert iou_matrix([G0], [half])[0, 0] == 0.5
    assert localization_score([G0], [half]).score == 0.5


def test_missed_object_adds_zero_and_n_is_the_gt_count() -> None:
    assert localization_score([G0, G1], [G0]).score == 0.5
    assert localization_score([G0, G1, (50.0, 50.0, 60.0, 60.0), (70.0, 0.0, 80.0, 9.0)], [G0]).score == 0.25


def test_no_gt_or_no_prediction_scores_zero() -> None:
    assert localization_score([], [G0]).score == 0.0
    assert localization_score([G0], []).score == 0.0
    assert localization_score([], [], mode="hungarian").matches == []


def test_bad_mode_and_threshold_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown localization mode"):
        localization_score([G0], [G0], mode="greedy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        localization_score([G0], [G0], threshold=1.5)


# --- paper vs hungarian on duplicate-box cases --------------------------------------------------------


def test_one_prediction_counts_for_two_overlapping_gts_only_in_paper_mode() -> None:
    g_shifted = (1.0, 0.0, 11.0, 10.0)  # IoU with G0: 90 / 110
    pred = [G0]  # one box, on G0; the second GT has no box of its own
    paper = localization_score([G0, g_shifted], pred, mode="paper")
    hungarian = localization_score([G0, g_shifted], pred, mode="hungarian")
    assert paper.score == pytest.approx((1.0 + 90 / 110) / 2)
    assert [(m.gt, m.pred) for m in paper.matches] == [(0, 0), (1, 0)]
    assert hungarian.score == pytest.approx(0.5)
    assert [(m.gt, m.pred) for m in hungarian.matches] == [(0, 0)]


def test_duplicate_predictions_on_one_gt_do_not_cover_a_missed_gt() -> None:
    far = (50.0, 50.0, 60.0, 60.0)
    pred = [G0, (0.0, 0.0, 10.0, 9.0)]  # two boxes on G0, none on `far`
    for mode in ("paper", "hungarian"):
        loc = localization_score([G0, far], pred, mode=mode)
        assert loc.score == 0.5
        assert loc.matches == [Match(0, 0, 1.0)]


def test_hungarian_finds_the_best_assignment() -> None:
    # pred 0 fits both GTs; pred 1 fits only GT 1. One-to-one, the best is p0 -> g0 and p1 -> g1.
    g1 = (0.0, 0.0, 12.0, 10.0)
    pred = [(0.0, 0.0, 11.0, 10.0), (0.0, 0.0, 12.5, 10.0)]
    loc = localization_score([G0, g1], pred, mode="hungarian")
    assert [(m.gt, m.pred) for m in loc.matches] == [(0, 0), (1, 1)]
    assert loc.score == pytest.approx((10 / 11 + 12 / 12.5) / 2)


coord = st.integers(min_value=0, max_value=60)
box_strategy = st.tuples(coord, coord, st.integers(1, 40), st.integers(1, 40)).map(
    lambda t: (float(t[0]), float(t[1]), float(t[0] + t[2]), float(t[1] + t[3]))
)


def _brute_force_one_to_one(gt: list[BoxT], pred: list[BoxT], threshold: float) -> float:
    p = iou_matrix(gt, pred)
    p[p < threshold] = 0.0
    best = 0.0
    k = min(len(gt), len(pred))
    for rows in itertools.permutations(range(len(gt)), k):
        for cols in itertools.permutations(range(len(pred)), k):
            best = max(best, float(sum(p[r, c] for r, c in zip(rows, cols, strict=True))))
    return best / len(gt)


@settings(max_examples=60, deadline=None)
@given(
    gt=st.lists(box_strategy, min_size=1, max_size=4),
    pred=st.lists(box_strategy, min_size=1, max_size=4),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7]),
)
def test_hungarian_is_the_best_one_to_one_assignment_and_never_beats_paper(
    gt: list[BoxT], pred: list[BoxT], threshold: float
) -> None:
    hungarian = localization_score(gt, pred, threshold=threshold, mode="hungarian")
    paper = localization_score(gt, pred, threshold=threshold, mode="paper")
    assert hungarian.score == pytest.approx(_brute_force_one_to_one(gt, pred, threshold))
    assert hungarian.score <= paper.score + 1e-12
    assert 0.0 <= hungarian.score <= 1.0
    assert len({m.pred for m in hungarian.matches}) == len(hungarian.matches)


@settings(max_examples=60, deadline=None)
@given(
    gt=st.lists(box_strategy, min_size=1, max_size=15),
    pred=st.lists(box_strategy, min_size=1, max_size=15),
)
def test_python_and_numpy_paths_agree(gt: list[BoxT], pred: list[BoxT]) -> None:
    # Small inputs run a plain loop, large ones numpy (speed); both must give the same answers.
    original = boxes_module._PYTHON_PAIRS_MAX
    try:
        boxes_module._PYTHON_PAIRS_MAX = 10**9
        loop = (localization_score(gt, pred), refine_boxes(pred, gt))
        boxes_module._PYTHON_PAIRS_MAX = -1
        vectorised = (localization_score(gt, pred), refine_boxes(pred, gt))
    finally:
        boxes_module._PYTHON_PAIRS_MAX = original
    assert loop[0].score == pytest.approx(vectorised[0].score)
    assert [(m.gt, m.pred) for m in loop[0].matches] == [(m.gt, m.pred) for m in vectorised[0].matches]
    assert loop[1] == vectorised[1]
    # and the paper score is the formula, straight from the matrix
    p = iou_matrix(gt, pred)
    p[p < 0.5] = 0.0
    assert loop[0].score == pytest.approx(p.max(axis=1).sum() / len(gt))


# --- refinement ---------------------------------------------------------------------------------------


def test_refine_replaces_boxes_above_threshold_by_their_best_gt() -> None:
    near_g1 = (21.0, 0.0, 30.0, 10.0)  # IoU 0.9 with G1
    between = (8.0, 0.0, 21.0, 10.0)  # overlaps both, IoU < 0.5 with each
    assert refine_boxes([near_g1, between], [G0, G1]) == [G1, between]


def test_refine_iou_exactly_threshold_is_not_replaced() -> None:
    half = (0.0, 0.0, 10.0, 5.0)  # IoU with G0 exactly 0.5
    assert refine_boxes([half], [G0]) == [half]
    assert refine_boxes([half], [G0], threshold=0.49) == [G0]


def test_refine_picks_the_best_of_several_gts() -> None:
    g_wide = (0.0, 0.0, 12.0, 10.0)
    pred = (0.0, 0.0, 11.5, 10.0)  # IoU 10/11.5 with G0, 11.5/12 with g_wide
    assert refine_boxes([pred], [G0, g_wide]) == [g_wide]


def test_refine_keeps_order_and_length_and_handles_empty() -> None:
    pred = [(100.0, 100.0, 110.0, 110.0), (0.5, 0.0, 10.0, 10.0), G1]
    assert refine_boxes(pred, [G0, G1]) == [pred[0], G0, G1]
    assert refine_boxes(pred, []) == pred
    assert refine_boxes([], [G0]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(box_strategy, min_size=0, max_size=7), st.lists(box_strategy, min_size=0, max_size=8))
def test_localize_and_refine_equals_the_two_functions(gt: list[BoxT], pred: list[BoxT]) -> None:
    loc, refined = localize_and_refine(gt, pred, threshold=0.5)
    assert loc == localization_score(gt, pred, threshold=0.5)
    assert refined == refine_boxes(pred, gt, threshold=0.5)


def _copies(boxes: list[BoxT]) -> list[BoxT]:
    """Equal boxes as distinct objects: ties that only the lowest-index rule settles."""
    return [(b[0], b[1], b[2], b[3]) for b in boxes]


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    pool=st.lists(box_strategy, min_size=1, max_size=4),
    threshold=st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.6, 1.0]),
    refine_threshold=st.sampled_from([0.0, 1 / 3, 0.5, 1.0]),
)
def test_localize_and_refine_many_equals_one_call_per_candidate(
    data: st.DataObject, pool: list[BoxT], threshold: float, refine_threshold: float
) -> None:
    # Boxes drawn from a small pool repeat, so IoUs tie; on integer pixels they hit the thresholds
    # exactly (0.5 for half a box, 1/3, 1).
    boxes = st.one_of(st.sampled_from(pool), box_strategy)
    gt = data.draw(st.lists(boxes, max_size=6), label="gt")
    gt += _copies(gt[: data.draw(st.integers(0, 2))])
    # Empty candidates, and some too big for the loop (numpy path), among ordinary ones.
    one_pred = st.lists(boxes, max_size=8) | st.lists(boxes, min_size=27, max_size=30)
    preds = [p + _copies(p[:2]) for p in data.draw(st.lists(one_pred, max_size=9), label="preds")]
    many = localize_and_refine_many(gt, preds, threshold=threshold, refine_threshold=refine_threshold)
    one = [localize_and_refine(gt, p, threshold=threshold, refine_threshold=refine_threshold) for p in preds]
    assert many == one  # exactly: floats compared with ==
    for (loc, refined), pred in zip(many, preds, strict=True):
        # and as the two functions define them, down to which of equal boxes is used
        assert loc == localization_score(gt, pred, threshold=threshold)
        want = refine_boxes(pred, gt, threshold=refine_threshold)
        assert len(refined) == len(want) and all(a is b for a, b in zip(refined, want, strict=True))


def test_localize_and_refine_many_other_modes_and_errors() -> None:
    gt = [G0, G1]
    preds = [[(0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, 10.0)], [], [(20.0, 0.0, 30.0, 8.0)]]
    many = localize_and_refine_many(gt, preds, mode="hungarian")
    assert many == [localize_and_refine(gt, p, mode="hungarian") for p in preds]
    assert [loc.score for loc, _ in many] == [0.5, 0.0, pytest.approx(0.4)]
    assert localize_and_refine_many([], preds) == [localize_and_refine([], p) for p in preds]
    assert localize_and_refine_many(gt, []) == []
    with pytest.raises(ValueError, match="threshold"):
        localize_and_refine_many(gt, preds, refine_threshold=1.5)
    with pytest.raises(ValueError, match="unknown localization mode"):
        localize_and_refine_many(gt, preds, mode="best")  # type: ignore[arg-type]
