"""The scorer builds its answers without validation (spr.scorer.responses): they must be exactly what
validating the same values gives, field for field and byte for byte in JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from scorer_fixtures import CUP, DOG, FAR_DOG, IMAGE, LOOSE_CUP, OBJECTS, REGION, grounded
from spr.scorer.scoring import Scorer, ScoringInput
from spr.shared.scoring_api import ScoreOptions, ScoreResponse


def _assert_as_validated(response: ScoreResponse) -> None:
    validated = ScoreResponse.model_validate(response.model_dump())
    assert validated == response
    assert validated.model_dump_json() == response.model_dump_json()
    for ours, theirs in zip(response.candidates, validated.candidates, strict=True):
        assert ours.model_fields_set == theirs.model_fields_set
        assert ours.localization.model_fields_set == theirs.localization.model_fields_set
        for mine, other in zip(ours.localization.matches, theirs.localization.matches, strict=True):
            assert mine.model_fields_set == other.model_fields_set
            assert type(mine.box) is tuple and all(type(v) is float for v in mine.box)
    if response.pair is not None:
        assert validated.pair is not None
        assert response.pair.model_fields_set == validated.pair.model_fields_set


@pytest.mark.parametrize("fmt", ["ferret", "shikra", "qwen2vl", "qwen3vl", "internvl"])
@pytest.mark.parametrize(
    "options", [{"lambda": 0.0}, {"lambda": 0.0, "refine": False, "localization": "hungarian"}]
)
def test_unvalidated_response_equals_its_validated_copy(
    scorer_data_root: Path, fmt: str, options: dict[str, object]
) -> None:
    texts = [
        grounded(fmt, "a cup", CUP),
        grounded(fmt, "a cup", LOOSE_CUP) + " and " + grounded(fmt, "a dog", DOG) + ".",
        grounded(fmt, "a dog", FAR_DOG) + " [12, 30",
        "nothing grounded",
    ]
    inputs = ScoringInput(
        image=Image.open(scorer_data_root / IMAGE),
        region=REGION,
        objects=OBJECTS,
        candidates=[(f"c{i}", t) for i, t in enumerate(texts)],
        format=fmt,  # type: ignore[arg-type]
        options=ScoreOptions.model_validate(options),
    )
    response = Scorer().score(inputs)
    assert any(c.localization.matches for c in response.candidates)
    _assert_as_validated(response)


def test_detector_boxes_are_validated(scorer_data_root: Path) -> None:
    """Detector boxes come from a model (or the caller of finish): their matches are validated."""

    class _Named:
        model_id = "fake-detector"

    scorer = Scorer(detector=_Named())  # type: ignore[arg-type]
    inputs = ScoringInput(
        image=Image.open(scorer_data_root / IMAGE),
        region=REGION,
        objects=OBJECTS,
        candidates=[("c0", grounded("ferret", "a dog", FAR_DOG))],
        format="ferret",
        options=ScoreOptions.model_validate({"lambda": 0.0}),
    )
    plan = scorer.plan(inputs)
    response = scorer.finish(plan, detections={"a dog": [[60, 20, 140, 90]]})  # type: ignore[list-item]
    match = response.candidates[0].localization.matches[0]
    assert (match.source, match.box) == ("detector", (60.0, 20.0, 140.0, 90.0))
    assert all(type(v) is float for v in match.box)
    _assert_as_validated(response)
