"""Fixtures of the scorer tests (helpers live in scorer_fixtures.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scorer_fixtures import write_images
from spr.scorer.scoring import Scorer
from spr.scorer.semantic import SemanticScorer
from spr.scorer.settings import ScorerSettings


@pytest.fixture(scope="session")
def scorer_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scorer-data") / "root"
    write_images(root)
    return root


@pytest.fixture(scope="session")
def clip(tiny_models: Any) -> SemanticScorer:
    """The tiny CLIP, loaded once per session on CPU."""
    return SemanticScorer.load(tiny_models.clip, device="cpu")


@pytest.fixture()
def make_settings(scorer_data_root: Path) -> Callable[..., ScorerSettings]:
    """ScorerSettings on the test data root, localization-only and without auth unless overridden."""

    def make(**overrides: Any) -> ScorerSettings:
        values: dict[str, Any] = {
            "data_root": scorer_data_root,
            "scorer_semantic_model": "none",
            "scorer_auth": "none",
        }
        values.update(overrides)
        return ScorerSettings(**values)

    return make


@pytest.fixture()
def clip_scorer(clip: SemanticScorer, make_settings: Callable[..., ScorerSettings]) -> Scorer:
    from spr.scorer.loading import image_store

    return Scorer(semantic=clip, images=image_store(make_settings()))
