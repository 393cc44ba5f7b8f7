"""Fixtures of the trainer tests (helpers live in trainer_fixtures.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spr.shared.schemas import PreferencePair
from trainer_fixtures import IMAGE_SIZES, MakePair, make_pair, write_images


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data-root")
    write_images(root, len(IMAGE_SIZES))
    return root


@pytest.fixture(scope="session")
def pairs_factory(data_root: Path) -> MakePair:
    """make(index, **overrides) -> a pair on one of the data root's images (cycling)."""

    def make(index: int, **overrides: Any) -> PreferencePair:
        slot = index % len(IMAGE_SIZES)
        overrides.setdefault("size", IMAGE_SIZES[slot])
        pair: PreferencePair = make_pair(index, f"images/img-{slot:03d}.png", **overrides)
        return pair

    return make


@pytest.fixture(scope="session")
def tiny_qwen2vl(tiny_models: Any) -> Path:
    return Path(tiny_models.qwen2vl)
