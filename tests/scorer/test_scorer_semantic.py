"""S_sem with the tiny CLIP: both terms, region-restricted pooling, long texts, the batched image side."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scorer_fixtures import CUP, DOG, IMAGE, OBJECTS, REGION, grounded
from spr.scorer.batching import BatchedScorer
from spr.scorer.scoring import Scorer, ScoringInput
from spr.scorer.semantic import SemanticScorer, split_sentences
from spr.shared.scoring_api import ScoreOptions


@pytest.fixture(scope="module")
def rgb(scorer_data_root: Path) -> Image.Image:
    return Image.open(scorer_data_root / IMAGE).convert("RGB")


def test_unrestricted_pooling_is_clips_own_image_features(clip: SemanticScorer, rgb: Image.Image) -> None:
    # The hand-run last layer must reproduce CLIPModel.get_image_features when every patch is kept.
    ours = clip.embed_images([(rgb, None)])[0]
    with torch.inference_mode():
        pixels = clip._pixels([rgb])
        output = clip.model.get_image_features(pixel_values=pixels)
        reference = torch.nn.functional.normalize(output.pooler_output, dim=-1)[0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_region_restricted_pooling_differs_from_full_image_pooling(
    clip: SemanticScorer, rgb: Image.Image
) -> None:
    full, left, right = clip.embed_images([(rgb, None), (rgb, (0, 0, 60, 100)), (rgb, (120, 0, 200, 100))])
    assert float(np.dot(full, left)) < 0.9999
    assert float(np.dot(left, right)) < 0.9999
    # A region covering the whole image keeps every patch: the same as no restriction.
    whole = clip.embed_images([(rgb, (0, 0, 200, 100))])[0]
    np.testing.assert_allclose(whole, full, atol=1e-6)


def test_region_cells_follow_the_resized_grid(clip: SemanticScorer) -> None:
    assert clip.grid == 8  # tiny CLIP: 64 x 64 pixels in 8 x 8-pixel patches
    # Left quarter of a 200 x 100 image: columns 0-1 (centres 0.5, 1.5 <= 2), every row.
    cells = clip.region_cells((0, 0, 50, 100), (200, 100)).reshape(8, 8)
    assert cells[:, :2].all() and not cells[:, 2:].any()
    # A region smaller than one cell falls back to the cells it touches.
    tiny = clip.region_cells((101, 51, 102, 52), (200, 100)).reshape(8, 8)
    assert tiny.sum() == 1 and tiny[4, 4]


def test_semantic_score_uses_crop_and_local_terms(clip: SemanticScorer, rgb: Image.Image) -> None:
    region = (0.0, 0.0, 60.0, 60.0)
    embedding = clip.embed_regions([(rgb, region)])[0]
    crop_alone = clip.embed_images([(rgb.crop((0, 0, 60, 60)), None)])[0]
    local_alone = clip.embed_images([(rgb, region)])[0]
    np.testing.assert_allclose(embedding.crop, crop_alone, atol=1e-5)
    np.testing.assert_allclose(embedding.local, local_alone, atol=1e-5)
    text = clip.embed_texts(["a red square on blue"])[0]
    values = clip.compare(embedding, text)
    assert values.crop == pytest.approx(float(np.dot(crop_alone, text)), abs=1e-5)
    assert values.local == pytest.approx(float(np.dot(local_alone, text)), abs=1e-5)
    assert values.crop != pytest.approx(values.local, abs=1e-6)
    assert values.score == pytest.approx((values.crop + values.local) / 2)


def test_long_text_is_split_into_sentences_and_averaged(clip: SemanticScorer) -> None:
    sentences = [
        f"Sentence number {i} talks about a red cup near a small brown dog on the grass." for i in range(12)
    ]
    long_text = " ".join(sentences)
    assert len(clip.tokenizer(long_text, verbose=False)["input_ids"]) > clip.max_text_tokens
    assert split_sentences(long_text) == sentences
    combined = clip.embed_texts([long_text])[0]
    parts = clip.embed_texts(sentences)
    mean = parts.mean(axis=0)
    np.testing.assert_allclose(combined, mean / np.linalg.norm(mean), atol=1e-5)
    # A short text is encoded whole, batched with others or alone alike.
    short = clip.embed_texts(["a red cup", long_text])
    np.testing.assert_allclose(short[0], clip.embed_texts(["a red cup"])[0], atol=1e-5)


def test_image_side_is_computed_once_per_region_and_texts_are_batched(
    clip: SemanticScorer, scorer_data_root: Path
) -> None:
    batches: list[tuple[str, int]] = []
    # Batches sized for exactly two requests (7 texts, 1 region each) flush the moment both are in;
    # the long wait only matters if the second request were seconds late.
    batched = BatchedScorer(
        Scorer(semantic=clip),
        max_texts=14,
        max_regions=2,
        max_wait_s=10.0,
        observe=lambda n, k: batches.append((n, k)),
    )
    # 8 candidates, two of which share T' (only boxes differ): 1 region, 7 unique texts.
    texts = [grounded("ferret", f"object {i}", CUP) for i in range(7)] + [grounded("ferret", "object 0", DOG)]

    def inputs() -> ScoringInput:
        # One image object per request, as HTTP requests have: a lazily opened PIL image must not be
        # decoded by two threads at once.
        return ScoringInput(
            image=Image.open(scorer_data_root / IMAGE),
            region=REGION,
            objects=OBJECTS,
            candidates=[(f"c{i}", t) for i, t in enumerate(texts)],
            format="ferret",
            options=ScoreOptions(),
        )

    async def go() -> None:
        results = await asyncio.gather(batched.score(inputs()), batched.score(inputs()))
        assert results[0] == results[1]
        await batched.aclose()

    asyncio.run(go())
    regions = sum(k for name, k in batches if name == "clip-image")
    text_items = sum(k for name, k in batches if name == "clip-text")
    assert regions == 2  # one per request, for all 8 candidates
    assert text_items == 2 * 7
    # The two concurrent requests shared one forward of each kind.
    assert [k for name, k in batches if name == "clip-text"] == [14]
    assert [k for name, k in batches if name == "clip-image"] == [2]
