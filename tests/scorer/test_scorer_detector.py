"""The optional detector term with a tiny random Grounding DINO: its boxes join S_loc's predictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scorer_fixtures import IMAGE, REGION, build_tiny_grounding_dino
from spr.scorer.app import create_app
from spr.scorer.detector import PhraseDetector
from spr.scorer.scoring import Scorer, ScoringInput
from spr.scorer.settings import ScorerSettings
from spr.shared.schemas import AnnotatedObject
from spr.shared.scoring_api import ScoreOptions

LOC_ONLY = ScoreOptions.model_validate({"lambda": 0.0})


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder: Path = build_tiny_grounding_dino(tmp_path_factory.mktemp("dino") / "grounding-dino")
    return folder


@pytest.fixture(scope="module")
def detector(dino_folder: Path) -> PhraseDetector:
    # Random weights score every query low: thresholds 0 keep its boxes so the path is exercised.
    return PhraseDetector.load(dino_folder, device="cpu", box_threshold=0.0, text_threshold=0.0)


def test_detector_finds_boxes_for_phrases_in_image_pixels(
    detector: PhraseDetector, scorer_data_root: Path
) -> None:
    rgb = Image.open(scorer_data_root / IMAGE).convert("RGB")
    found = detector.detect([(rgb, ["A red cup", "a dog", "a red cup"]), (rgb, [])])
    assert found[1] == {}
    assert set(found[0]) <= {"a red cup", "a dog"} and found[0]
    for boxes in found[0].values():
        assert 1 <= len(boxes) <= detector.max_boxes_per_phrase
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 200 and 0 <= y1 < y2 <= 100


def test_detector_boxes_join_the_localization_predictions(
    detector: PhraseDetector, scorer_data_root: Path
) -> None:
    image = Image.open(scorer_data_root / IMAGE)
    detected = detector.detect([(image.convert("RGB"), ["a red cup"])])[0]["a red cup"][0]
    # The GT object is where the detector looks; the text's own box is far away.
    objects = [AnnotatedObject(label="cup", box=detected)]
    text = "a red cup [950, 950, 999, 999]"
    inputs = ScoringInput(image, REGION, objects, [("c0", text)], "ferret", LOC_ONLY)

    without = Scorer().score(inputs).candidates[0]
    assert without.localization.score == 0.0

    scored = Scorer(detector=detector).score(inputs).candidates[0]
    assert scored.localization.score == pytest.approx(1.0)
    match = scored.localization.matches[0]
    assert (match.object, match.phrase, match.source) == (0, 0, "detector")
    # Detector boxes never enter the text: refinement leaves the written box alone.
    assert scored.refined is not None and scored.refined.text == text


def test_detector_configured_by_setting(
    dino_folder: Path,
    detector: PhraseDetector,
    make_settings: Callable[..., ScorerSettings],
    scorer_data_root: Path,
) -> None:
    settings = make_settings(
        scorer_detector_model=str(dino_folder),
        scorer_detector_box_threshold=0.0,
        scorer_detector_text_threshold=0.0,
    )
    # The service loads the same folder, so it finds the same box the fixture's detector finds.
    rgb = Image.open(scorer_data_root / IMAGE).convert("RGB")
    detected = detector.detect([(rgb, ["a red cup"])])[0]["a red cup"][0]
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert ready["detector_model"].startswith("grounding-dino@")
        body = {
            "image": {"path": IMAGE},
            "region": list(REGION),
            "objects": [{"label": "cup", "box": list(detected)}],
            "candidates": [{"id": "a", "text": "a red cup [950, 950, 999, 999]"}],
            "format": "ferret",
            "options": {"lambda": 0},
        }
        response = client.post("/score", json=body)
        assert response.status_code == 200, response.text
        localization = response.json()["candidates"][0]["localization"]
        assert localization["score"] == pytest.approx(1.0)
        assert [m["source"] for m in localization["matches"]] == ["detector"]
