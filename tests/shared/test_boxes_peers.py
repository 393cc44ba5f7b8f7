"""Box geometry against independent implementations: torchvision's box_iou and scipy's assignment.

The peers compute the same quantities from scratch (IoU in torch, the one-to-one assignment by scipy on
that IoU), so a change of convention in :mod:`spr.shared.boxes` (a union floor, an inclusive or
exclusive threshold, an off-by-one in the matching) shows up as a disagreement.
"""

from __future__ import annotations

import numpy as np
import pytest
from spr.shared.boxes import BoxT, iou_matrix, localization_score

torch = pytest.importorskip("torch")
ops = pytest.importorskip("torchvision.ops")
optimize = pytest.importorskip("scipy.optimize")


def _random_boxes(rng: np.random.Generator, n: int, scale: float) -> list[BoxT]:
    """``n`` boxes in a ``scale`` x ``scale`` pixel square, sides from 1e-3 of ``scale`` upwards."""
    xy = rng.uniform(0.0, scale, size=(n, 2))
    wh = rng.uniform(1e-3 * scale, 0.5 * scale, size=(n, 2))
    return [(x, y, x + w, y + h) for (x, y), (w, h) in zip(xy.tolist(), wh.tolist(), strict=True)]


def _torchvision_iou(a: list[BoxT], b: list[BoxT]) -> np.ndarray:
    got = ops.box_iou(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    return np.asarray(got.numpy())


@pytest.mark.parametrize("scale", [1e-5, 1.0, 640.0, 1e5])
def test_iou_matrix_equals_torchvision_box_iou(scale: float) -> None:
    # 1e-5: boxes whose sides are ~1e-8..5e-6 px, where a floor on the union used to bite.
    rng = np.random.default_rng(7)
    for _ in range(5):
        a, b = _random_boxes(rng, 9, scale), _random_boxes(rng, 13, scale)
        np.testing.assert_allclose(iou_matrix(a, b), _torchvision_iou(a, b), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.diag(iou_matrix(a, a)), 1.0, rtol=1e-9)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7])
def test_hungarian_score_equals_scipys_assignment_on_torchvision_ious(threshold: float) -> None:
    rng = np.random.default_rng(11)
    for n_gt, n_pred in [(1, 1), (3, 5), (6, 4), (12, 12)]:
        gt, pred = _random_boxes(rng, n_gt, 100.0), _random_boxes(rng, n_pred, 100.0)
        # Predictions near some GT boxes, so that scores above the threshold occur.
        pred += [(x1 + 2.0, y1 - 1.0, x2 + 1.0, y2 + 3.0) for x1, y1, x2, y2 in gt[: n_gt // 2 + 1]]
        p = _torchvision_iou(gt, pred)
        p[p < threshold] = 0.0
        rows, cols = optimize.linear_sum_assignment(p, maximize=True)
        expected = p[rows, cols].sum() / n_gt
        got = localization_score(gt, pred, threshold=threshold, mode="hungarian")
        assert got.score == pytest.approx(expected, rel=1e-12, abs=1e-12)
        # The paper's formula, straight from the peer's matrix: each GT's best prediction above the
        # threshold.
        paper = localization_score(gt, pred, threshold=threshold, mode="paper")
        assert paper.score == pytest.approx(p.max(axis=1).sum() / n_gt, rel=1e-12, abs=1e-12)
