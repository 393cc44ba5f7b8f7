"""The decoded-image LRU (SPR_SCORER_IMAGE_CACHE_ITEMS): same answers, one decode per file version."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scorer_fixtures import CUP, DOG, IMAGE, grounded, score_request, write_images
from spr.scorer import batching
from spr.scorer.app import create_app
from spr.scorer.image_cache import DecodedImageCache
from spr.scorer.images import ImageKey, ModelImage
from spr.scorer.scoring import Scorer
from spr.scorer.semantic import SemanticScorer
from spr.scorer.settings import ScorerSettings

TEXTS = [
    ("a", grounded("ferret", "a cup", CUP) + " and " + grounded("ferret", "a dog", DOG)),
    ("b", grounded("ferret", "a dog", DOG)),
]


def _model_image() -> ModelImage:
    return ModelImage(Image.new("RGB", (4, 4)))


def test_lru_evicts_the_least_recently_used_and_keys_on_file_identity() -> None:
    cache = DecodedImageCache(2)
    a, b, c = (ImageKey(name, 1, 10) for name in ("a", "b", "c"))
    images = {key: _model_image() for key in (a, b, c)}
    cache.put(a, 512, images[a])
    cache.put(b, 512, images[b])
    assert cache.get(a, 512) is images[a]  # a is now the most recent
    cache.put(c, 512, images[c])
    assert cache.get(b, 512) is None and cache.get(a, 512) is images[a] and cache.get(c, 512) is images[c]
    assert cache.get(ImageKey("a", 2, 10), 512) is None  # rewritten file: new mtime
    assert cache.get(a, 1024) is None  # another decode side
    off = DecodedImageCache(0)
    off.put(a, 512, images[a])
    assert len(off) == 0 and off.get(a, 512) is None


@pytest.fixture()
def counted_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = batching.decode_for_models

    def counting(*args: Any, **kwargs: Any) -> ModelImage:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(batching, "decode_for_models", counting)
    return calls


def _scores(response: Any) -> list[float]:
    assert response.status_code == 200, response.text
    return [c["semantic"]["score"] for c in response.json()["candidates"]]


def test_same_file_is_decoded_once_and_a_rewritten_file_again(
    make_settings: Callable[..., ScorerSettings],
    clip: SemanticScorer,
    tmp_path: Path,
    counted_decodes: list[int],
) -> None:
    root = tmp_path / "root"
    write_images(root)
    settings = make_settings(data_root=root)
    body = score_request(TEXTS, options={"lambda": 0.8})
    with TestClient(create_app(settings, scorer=Scorer(semantic=clip))) as client:
        first = _scores(client.post("/score", json=body))
        assert _scores(client.post("/score", json=body)) == first
        assert len(counted_decodes) == 1
        # Rewrite the file in place with other pixels (same size on disk is not required to miss).
        Image.new("RGB", (200, 100), (250, 250, 250)).save(root / IMAGE)
        stat = (root / IMAGE).stat()
        os.utime(root / IMAGE, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        changed = _scores(client.post("/score", json=body))
        assert len(counted_decodes) == 2
        assert changed != first


def test_cache_off_decodes_every_request_with_the_same_answers(
    make_settings: Callable[..., ScorerSettings],
    clip: SemanticScorer,
    counted_decodes: list[int],
) -> None:
    body = score_request(TEXTS, options={"lambda": 0.8})
    with TestClient(create_app(make_settings(), scorer=Scorer(semantic=clip))) as cached:
        expected = _scores(cached.post("/score", json=body))
    counted_decodes.clear()
    settings = make_settings(scorer_image_cache_items=0)
    with TestClient(create_app(settings, scorer=Scorer(semantic=clip))) as client:
        assert _scores(client.post("/score", json=body)) == expected
        assert _scores(client.post("/score", json=body)) == expected
    assert len(counted_decodes) == 2
