"""S_loc, refinement and pair selection against hand-computed values, in several box syntaxes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from scorer_fixtures import (
    CUP,
    DOG,
    FAR_DOG,
    IMAGE,
    LOOSE_CUP,
    OBJECTS,
    REGION,
    candidate_group,
    grounded,
)
from spr.scorer.errors import InputError, SemanticModelNotConfiguredError
from spr.scorer.pairing import SKIP_IDENTICAL, SKIP_MARGIN
from spr.scorer.scoring import Scorer, ScoringInput, settings_hash
from spr.scorer.semantic import SemanticScorer
from spr.shared import formats
from spr.shared.schemas import GroundingFormat, PreferencePair
from spr.shared.scoring_api import PairResult, ScoreOptions, ScoreResponse

LOC_ONLY = ScoreOptions.model_validate({"lambda": 0.0})


def run(
    root: Path,
    texts: list[str],
    fmt: str,
    options: ScoreOptions = LOC_ONLY,
    scorer: Scorer | None = None,
) -> ScoreResponse:
    image = Image.open(root / IMAGE)
    inputs = ScoringInput(
        image=image,
        region=REGION,
        objects=OBJECTS,
        candidates=[(f"c{i}", t) for i, t in enumerate(texts)],
        format=fmt,  # type: ignore[arg-type]
        options=options,
    )
    return (scorer or Scorer()).score(inputs)


@pytest.mark.parametrize("fmt", ["ferret", "shikra", "qwen2vl", "qwen3vl", "internvl"])
def test_localization_refinement_and_pair_match_hand_computed_values(
    scorer_data_root: Path, fmt: GroundingFormat
) -> None:
    exact_cup = grounded(fmt, "a cup", CUP)
    loose_both = grounded(fmt, "a cup", LOOSE_CUP) + " and " + grounded(fmt, "a dog", DOG) + "."
    far_dog = grounded(fmt, "a dog", FAR_DOG)
    result = run(scorer_data_root, [exact_cup, loose_both, far_dog], fmt)
    first, second, third = result.candidates

    # Exact cup, dog missed: (1 + 0) / 2.
    assert first.localization.score == pytest.approx(0.5)
    assert [(m.object, m.phrase) for m in first.localization.matches] == [(0, 0)]
    assert first.localization.matches[0].iou == pytest.approx(1.0)
    assert first.refined is not None and first.refined.text == exact_cup

    # Loose cup (IoU 1600/2000 = 0.8) and exact dog: (0.8 + 1) / 2; refined cup -> GT: 1.0.
    assert second.localization.score == pytest.approx(0.9)
    assert second.phrases[0].boxes == [(10.0, 10.0, 60.0, 50.0)]
    assert second.refined is not None
    assert second.refined.text == grounded(fmt, "a cup", CUP) + " and " + grounded(fmt, "a dog", DOG) + "."
    assert second.refined.localization.score == pytest.approx(1.0)
    # The scorer reuses the original's T' (and S_sem) for the refined text: they must be equal.
    assert formats.strip_boxes(second.refined.text, fmt) == formats.strip_boxes(loose_both, fmt)
    assert second.refined.score == pytest.approx(1.0)

    # Far dog: IoU 1600/5600 < 0.5 counts 0 and is not refined.
    assert third.localization.score == 0.0
    assert third.localization.matches == []
    assert third.refined is not None and third.refined.text == far_dog

    pair = result.pair
    assert pair is not None and result.pair_skipped_reason is None
    assert (pair.chosen.id, pair.chosen.refined) == ("c1", True)
    assert pair.chosen.score == pytest.approx(1.0)
    assert pair.chosen.text == second.refined.text
    assert (pair.rejected.id, pair.rejected.text, pair.rejected.score) == ("c2", far_dog, 0.0)
    assert pair.margin == pytest.approx(1.0)


def test_lambda_zero_gives_exactly_the_localization_score(
    scorer_data_root: Path, clip: SemanticScorer
) -> None:
    texts = [grounded("ferret", "a cup", LOOSE_CUP), grounded("ferret", "a dog", FAR_DOG)]
    # Even with a semantic model available, lambda = 0 is localization only, bit for bit.
    result = run(scorer_data_root, texts, "ferret", scorer=Scorer(semantic=clip))
    for candidate in result.candidates:
        assert candidate.semantic is None
        assert candidate.score == candidate.localization.score
        assert candidate.refined is not None
        assert candidate.refined.score == candidate.refined.localization.score


def test_total_mixes_semantic_and_localization_with_lambda(
    scorer_data_root: Path, clip: SemanticScorer
) -> None:
    options = ScoreOptions.model_validate({"lambda": 0.8})
    texts = [grounded("ferret", "a red cup", LOOSE_CUP) + " next to " + grounded("ferret", "a dog", DOG)]
    result = run(scorer_data_root, texts, "ferret", options, scorer=Scorer(semantic=clip))
    candidate = result.candidates[0]
    assert candidate.semantic is not None and candidate.refined is not None
    assert candidate.semantic.score == pytest.approx((candidate.semantic.crop + candidate.semantic.local) / 2)
    assert candidate.score == pytest.approx(0.8 * candidate.semantic.score + 0.2 * 0.9)
    # Refinement changes only coordinates, so the refined text has the same T' and the same S_sem.
    assert candidate.refined.score == pytest.approx(0.8 * candidate.semantic.score + 0.2 * 1.0)


def test_semantic_score_ignores_box_coordinates(scorer_data_root: Path, clip: SemanticScorer) -> None:
    options = ScoreOptions.model_validate({"lambda": 1.0})
    texts = [
        grounded("qwen2vl", "a red cup", CUP) + " beside " + grounded("qwen2vl", "a dog", DOG),
        grounded("qwen2vl", "a red cup", FAR_DOG) + " beside " + grounded("qwen2vl", "a dog", LOOSE_CUP),
    ]
    result = run(scorer_data_root, texts, "qwen2vl", options, scorer=Scorer(semantic=clip))
    first, second = (c.semantic for c in result.candidates)
    assert first is not None and second is not None
    assert first == second  # boxes differ, T' is the same

    # ... and S_sem is computed on T', not on the raw text with its box tokens.
    stripped = formats.strip_boxes(texts[0], "qwen2vl")
    assert "box_start" not in stripped and "a red cup" in stripped
    rgb = Image.open(scorer_data_root / IMAGE).convert("RGB")
    region = clip.embed_regions([(rgb, REGION)])[0]
    on_stripped = clip.compare(region, clip.embed_texts([stripped])[0])
    on_raw = clip.compare(region, clip.embed_texts([texts[0]])[0])
    assert first.crop == pytest.approx(on_stripped.crop, abs=1e-5)
    assert first.local == pytest.approx(on_stripped.local, abs=1e-5)
    assert abs(on_raw.crop - on_stripped.crop) > 1e-4


def test_hungarian_mode_matches_one_prediction_to_one_object(scorer_data_root: Path) -> None:
    # GT boxes 0 and 1 of a separate case: one predicted box (0, 0, 100, 100) has IoU 1 and 0.8 with them.
    image = Image.open(scorer_data_root / IMAGE)
    objects = [
        OBJECTS[0].model_copy(update={"box": (0.0, 0.0, 100.0, 100.0)}),
        OBJECTS[1].model_copy(update={"box": (0.0, 0.0, 100.0, 80.0)}),
    ]
    text = grounded("qwen2vl", "two boxes", (0, 0, 500, 1000))
    scores = {}
    for mode in ("paper", "hungarian"):
        options = ScoreOptions.model_validate({"lambda": 0.0, "localization": mode})
        inputs = ScoringInput(image, REGION, objects, [("c0", text)], "qwen2vl", options)
        scores[mode] = Scorer().score(inputs).candidates[0].localization.score
    assert scores["paper"] == pytest.approx((1.0 + 0.8) / 2)
    assert scores["hungarian"] == pytest.approx((1.0 + 0.0) / 2)


def test_pair_needs_the_minimum_margin(scorer_data_root: Path) -> None:
    exact = grounded("ferret", "a cup", CUP)  # S_loc 0.5
    slightly_off = grounded("ferret", "a cup", (50, 100, 260, 500))  # IoU 1600/1680: S_loc 0.47619
    result = run(scorer_data_root, [exact, slightly_off], "ferret")
    assert result.candidates[1].localization.score == pytest.approx(1600 / 1680 / 2)
    assert result.pair is None and result.pair_skipped_reason == SKIP_MARGIN

    options = ScoreOptions.model_validate({"lambda": 0.0, "min_margin": 0.02})
    result = run(scorer_data_root, [exact, slightly_off], "ferret", options)
    assert result.pair is not None
    # Both refine to 0.5; the earliest wins and, unchanged by refinement, is reported as written.
    assert (result.pair.chosen.id, result.pair.chosen.refined, result.pair.chosen.text) == (
        "c0",
        False,
        exact,
    )
    assert (result.pair.rejected.id, result.pair.rejected.text) == ("c1", slightly_off)
    assert result.pair.margin == pytest.approx(0.5 - 1600 / 1680 / 2)


def test_without_refinement_chosen_is_best_as_written(scorer_data_root: Path) -> None:
    options = ScoreOptions.model_validate({"lambda": 0.0, "refine": False})
    texts = [grounded("internvl", "a cup", LOOSE_CUP), grounded("internvl", "a dog", FAR_DOG)]
    result = run(scorer_data_root, texts, "internvl", options)
    assert all(c.refined is None for c in result.candidates)
    assert result.pair is not None
    assert (result.pair.chosen.id, result.pair.chosen.refined) == ("c0", False)
    assert result.pair.chosen.score == pytest.approx(0.4)


def test_single_candidate_pairs_with_itself_only_when_refinement_changed_it(scorer_data_root: Path) -> None:
    loose = grounded("ferret", "a cup", LOOSE_CUP)
    result = run(scorer_data_root, [loose], "ferret")
    assert result.pair is not None
    assert result.pair.chosen.text == grounded("ferret", "a cup", CUP)
    assert result.pair.rejected.text == loose
    assert result.pair.margin == pytest.approx(0.5 - 0.4)

    exact = run(scorer_data_root, [grounded("ferret", "a cup", CUP)], "ferret")
    assert exact.pair is None and exact.pair_skipped_reason == SKIP_IDENTICAL


def test_unparsable_text_is_scored_zero_with_its_problems(scorer_data_root: Path) -> None:
    result = run(scorer_data_root, ["a cup [50, 100, 25", grounded("ferret", "a cup", CUP)], "ferret")
    broken = result.candidates[0]
    assert broken.localization.score == 0.0 and broken.problems
    assert result.pair is not None and result.pair.rejected.id == "c0"


def test_bad_inputs_name_the_field(scorer_data_root: Path) -> None:
    image = Image.open(scorer_data_root / IMAGE)
    options = ScoreOptions()  # lambda 0.8 needs a semantic model
    with pytest.raises(SemanticModelNotConfiguredError) as missing:
        Scorer().score(ScoringInput(image, REGION, OBJECTS, [("c", "x")], "ferret", options))
    assert missing.value.field == "options.lambda" and "SPR_SCORER_SEMANTIC_MODEL" in missing.value.message
    with pytest.raises(InputError) as outside:
        Scorer().score(
            ScoringInput(image, (300.0, 0.0, 400.0, 50.0), OBJECTS, [("c", "x")], "ferret", LOC_ONLY)
        )
    assert outside.value.field == "region"


def test_settings_hash_changes_with_options_and_models() -> None:
    base = settings_hash(ScoreOptions(), {"semantic": "clip@1", "detector": None})
    assert base == settings_hash(ScoreOptions(), {"semantic": "clip@1", "detector": None})
    assert base != settings_hash(
        ScoreOptions.model_validate({"lambda": 0.5}), {"semantic": "clip@1", "detector": None}
    )
    assert base != settings_hash(ScoreOptions(), {"semantic": "clip@2", "detector": None})


def test_the_http_pair_is_the_projection_of_the_queue_pair(scorer_data_root: Path) -> None:
    loose_both = grounded("ferret", "a cup", LOOSE_CUP) + " and " + grounded("ferret", "a dog", DOG) + "."
    far_dog = grounded("ferret", "a dog", FAR_DOG)
    group = candidate_group("t", [loose_both, far_dog])
    inputs = ScoringInput(
        image=Image.open(scorer_data_root / IMAGE),
        region=REGION,
        objects=OBJECTS,
        candidates=[(c.id, c.text) for c in group.candidates],
        format="ferret",
        options=LOC_ONLY,
    )
    response = Scorer().score(inputs)
    assert response.pair is not None

    pair = response.pair.to_preference_pair(group, response.candidates, "settings-hash")

    assert PairResult.of(pair) == response.pair
    assert pair.pair_id == PreferencePair.make_id("t") and pair.task_id == "t"
    assert (pair.chosen.candidate_id, pair.chosen.refined) == ("t-c0", True)
    assert pair.chosen.text_before_refinement == loose_both
    assert pair.chosen.scores.localization == pytest.approx(1.0)  # of the refined text
    assert pair.chosen.scores.semantic is None  # lambda 0: not computed
    assert (pair.rejected.candidate_id, pair.rejected.text, pair.rejected.refined) == ("t-c1", far_dog, False)
    assert pair.rejected.text_before_refinement is None
    assert pair.provenance.scorer_settings_hash == "settings-hash"
