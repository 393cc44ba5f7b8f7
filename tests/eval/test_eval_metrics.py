"""Evaluation metrics on hand-made cases with known answers, including the coordinate conversions of
model answers in five formats (the same parsers and coordinate rules as training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from spr.eval.accuracy import (
    THRESHOLDS,
    box_iou,
    mean_rec_metrics,
    rec_metrics,
    region_metrics,
    score_region,
)
from spr.eval.data import RecExample
from spr.eval.prompting import AnswerParser
from spr.eval.rec import score_answers
from spr.eval.tables import rec_table, region_table, results_json
from spr.shared.errors import SprError
from spr.shared.formats.reader import ResizeRule
from spr.shared.schemas import Size

# A 560 x 280 image; the GT box is exactly 10 % .. 50 % of each side, so every relative grid writes it
# without rounding (Shikra's square is 560 x 560 with the image 140 px down: y 0.3 .. 0.5 of it). The
# resize rule below halves the image for Qwen2.5-VL (max 280 x 140 pixels).
W, H = 560, 280
GT = (56.0, 28.0, 280.0, 140.0)
RULE = ResizeRule(patch_size=14, merge_size=2, min_pixels=28 * 28, max_pixels=280 * 140)

RIGHT = {
    "ferret": "the cat [100, 100, 500, 500]",
    "shikra": "the cat [0.100,0.300,0.500,0.500]",
    "qwen2vl": "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,100),(500,500)<|box_end|>",
    # absolute pixels of the 280 x 140 resized image: half the original coordinates
    "qwen25vl": '```json\n[{"bbox_2d": [28, 14, 140, 70], "label": "the cat"}]\n```',
    # Qwen3-VL: the same JSON on the 0-1000 grid of the original image
    "qwen3vl": '```json\n[{"bbox_2d": [100, 100, 500, 500], "label": "the cat"}]\n```',
    "internvl": "<ref>the cat</ref><box>[[100, 100, 500, 500]]</box>",
}
# The same box moved right by half its width: IoU 1/3 with the GT.
SHIFTED = {
    "ferret": "the cat [300, 100, 700, 500]",
    "shikra": "the cat [0.300,0.300,0.700,0.500]",
    "qwen2vl": "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(300,100),(700,500)<|box_end|>",
    "qwen25vl": '[{"bbox_2d": [84, 14, 196, 70], "label": "the cat"}]',
    "qwen3vl": '[{"bbox_2d": [300, 100, 700, 500], "label": "the cat"}]',
    "internvl": "<ref>the cat</ref><box>[[300, 100, 700, 500]]</box>",
}


def _parser(fmt: str) -> AnswerParser:
    return AnswerParser(format=fmt, resize_rule=RULE if fmt == "qwen25vl" else None)  # type: ignore[arg-type]


def _examples(n: int) -> list[RecExample]:
    return [
        RecExample(id=str(i), image="x.png", expression="the cat", box=GT, width=W, height=H)
        for i in range(n)
    ]


def test_rule_halves_the_image() -> None:
    assert RULE.resized(W, H) == Size(width=280, height=140)


@pytest.mark.parametrize("fmt", sorted(RIGHT))
def test_answer_in_model_syntax_maps_to_the_gt_box(fmt: str) -> None:
    metrics, predictions = score_answers(
        _examples(2), [RIGHT[fmt], SHIFTED[fmt]], _parser(fmt), data_root=Path()
    )
    right, shifted = predictions
    assert right.box == pytest.approx(GT)
    assert right.iou == pytest.approx(1.0)
    assert shifted.iou == pytest.approx(1 / 3)
    assert metrics.accuracy == pytest.approx({t: 0.5 for t in THRESHOLDS})
    assert metrics.mean_iou == pytest.approx((1 + 1 / 3) / 2)
    assert metrics.no_box_rate == 0.0


def test_qwen25vl_coordinates_read_as_original_pixels_would_miss() -> None:
    # The resized-pixel answer read as original pixels would be a box of half the size, up and left:
    # intersection 84 x 42, union 224 x 112 + 112 x 56 - 84 x 42; a miss. The resize rule matters.
    half = (28.0, 14.0, 140.0, 70.0)
    assert box_iou(GT, half) == pytest.approx(3528 / 27832)
    assert _parser("qwen25vl").read(RIGHT["qwen25vl"], Size(width=W, height=H)).box == pytest.approx(GT)
    with pytest.raises(SprError, match="--model"):
        AnswerParser(format="qwen25vl")


def test_first_box_is_the_prediction_and_a_missing_box_is_a_miss() -> None:
    two = "the cat [100, 100, 500, 500] and the dog [600, 600, 900, 900]"
    wrong_first = "the dog [600, 600, 900, 900] and the cat [100, 100, 500, 500]"
    answers = [two, wrong_first, "a cat, no box", "the cat [100, 100, 5"]
    metrics, predictions = score_answers(_examples(4), answers, _parser("ferret"), data_root=Path())
    assert [p.iou for p in predictions] == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert [p.box is None for p in predictions] == [False, False, True, True]
    assert predictions[3].problems == 1  # the truncated box is reported, not guessed
    assert metrics.accuracy[0.5] == 0.25
    assert metrics.no_box_rate == 0.5
    assert metrics.parse_problem_rate == 0.25


def test_rec_accuracy_counts_iou_at_or_above_each_threshold() -> None:
    # IoU exactly 0.5 (half the box) counts at 0.5; 0.65 counts at 0.5 and 0.6 only.
    assert box_iou((0, 0, 100, 100), (0, 0, 100, 50)) == 0.5
    assert box_iou((0, 0, 100, 100), None) == 0.0
    m = rec_metrics([1.0, 0.65, 0.5, 0.0], [True, True, True, False], [0, 0, 1, 0])
    assert m.examples == 4
    assert m.accuracy == {0.5: 0.75, 0.6: 0.5, 0.7: 0.25, 0.75: 0.25, 0.8: 0.25, 0.9: 0.25}
    assert m.mean_iou == pytest.approx(2.15 / 4)
    assert (m.no_box_rate, m.parse_problem_rate) == (0.25, 0.25)
    empty = rec_metrics([], [], [])
    assert empty.examples == 0 and empty.accuracy[0.5] == 0.0 and empty.mean_iou == 0.0


def test_mean_over_splits_is_unweighted() -> None:
    a = rec_metrics([1.0], [True], [0])
    b = rec_metrics([0.0, 0.0, 0.0], [False] * 3, [0] * 3)
    mean = mean_rec_metrics([a, b])
    assert mean.examples == 4
    assert mean.accuracy[0.5] == 0.5  # (1.0 + 0.0) / 2, not 1 / 4
    assert mean.no_box_rate == 0.5


def test_region_scores_paper_s_loc_and_one_to_one_matching() -> None:
    a, b = (0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, 8.0)  # IoU(a, b) = 0.8
    one_box = score_region([a, b], [a])
    # paper S_loc lets the one box count for both objects; one-to-one matching does not
    assert one_box.s_loc == pytest.approx((1.0 + 0.8) / 2)
    assert one_box.matched_ious == (1.0,)

    far = (20.0, 0.0, 30.0, 10.0)
    duplicate = score_region([a, far], [a, a], problems=2)
    assert duplicate.s_loc == pytest.approx(0.5)
    assert duplicate.matched_ious == (1.0,)

    nothing = score_region([a, b, far], [])
    m = region_metrics([one_box, duplicate, nothing])
    assert (m.tasks, m.objects, m.predictions) == (3, 7, 3)
    assert m.mean_s_loc == pytest.approx((0.9 + 0.5 + 0.0) / 3)
    assert m.recall == pytest.approx(2 / 7)
    assert m.precision == pytest.approx(2 / 3)
    assert m.accuracy[0.5] == m.recall
    assert m.accuracy[0.9] == pytest.approx(2 / 7)
    assert m.matched_mean_iou == 1.0
    assert m.parse_problem_rate == pytest.approx(1 / 3)


def test_matched_box_accuracy_drops_with_the_threshold() -> None:
    gt = (0.0, 0.0, 100.0, 100.0)
    loose = (0.0, 0.0, 100.0, 65.0)  # IoU 0.65
    m = region_metrics([score_region([gt, (200.0, 0.0, 300.0, 100.0)], [loose])])
    assert m.accuracy == pytest.approx({0.5: 0.5, 0.6: 0.5, 0.7: 0.0, 0.75: 0.0, 0.8: 0.0, 0.9: 0.0})
    assert m.matched_mean_iou == pytest.approx(0.65)
    with pytest.raises(ValueError, match="below the matching threshold"):
        region_metrics([], thresholds=(0.3,))
    assert region_metrics([]).recall == 0.0


def test_tables_and_json_show_percent_and_fractions() -> None:
    val = rec_metrics([1.0, 0.65], [True, True], [0, 0])
    test = rec_metrics([0.0], [False], [0])
    table = rec_table({"val": val, "testA": test}, mean_rec_metrics([val, test]))
    lines = table.splitlines()
    assert lines[0].split() == [
        "split",
        "n",
        "@0.5",
        "@0.6",
        "@0.7",
        "@0.75",
        "@0.8",
        "@0.9",
        "mIoU",
        "no",
        "box",
    ]
    assert lines[2].split() == [
        "val",
        "2",
        "100.00",
        "100.00",
        "50.00",
        "50.00",
        "50.00",
        "50.00",
        "82.50",
        "0.00",
    ]
    assert lines[4].split()[:3] == ["mean", "3", "50.00"]
    data = results_json("rec", {"val": val}, None, {"model": "m"})
    assert data["splits"]["val"]["accuracy"] == {
        "0.5": 1.0,
        "0.6": 1.0,
        "0.7": 0.5,
        "0.75": 0.5,
        "0.8": 0.5,
        "0.9": 0.5,
    }
    assert data["mean"] is None and data["model"] == "m" and data["benchmark"] == "rec"
    regions = region_table({"held-out": region_metrics([score_region([GT], [GT])])})
    assert regions.splitlines()[2].split()[:5] == ["held-out", "1", "100.00", "100.00", "100.00"]
