"""Building the scoring object from settings: loads the configured models (slow: call off the loop)."""

from __future__ import annotations

import logging

from spr.scorer.detector import PhraseDetector
from spr.scorer.heap import set_heap_top_pad
from spr.scorer.images import ImageStore
from spr.scorer.scoring import Scorer
from spr.scorer.semantic import SemanticScorer
from spr.scorer.settings import ScorerSettings

logger = logging.getLogger(__name__)


def image_store(settings: ScorerSettings) -> ImageStore:
    return ImageStore(
        settings.data_root,
        max_image_bytes=settings.scorer_max_image_bytes,
        max_image_pixels=settings.scorer_max_image_pixels,
    )


def load_scorer(settings: ScorerSettings) -> Scorer:
    """The scorer with the models ``settings`` name (none, CLIP, CLIP + Grounding DINO).

    Raises ModelLoadError naming the setting when a model folder cannot be loaded.
    """
    # Process-wide like the torch threads below: this is called by the entry points, once per process.
    set_heap_top_pad(settings.scorer_heap_top_pad_mb * 1024 * 1024)
    if settings.scorer_torch_threads is not None:
        import torch

        torch.set_num_threads(settings.scorer_torch_threads)
    semantic = None
    if settings.semantic_model_path is not None:
        semantic = SemanticScorer.load(settings.semantic_model_path, device=settings.device)
    else:
        logger.info("no semantic model (SPR_SCORER_SEMANTIC_MODEL=none): localization-only scoring")
    detector = None
    if settings.detector_model_path is not None:
        detector = PhraseDetector.load(
            settings.detector_model_path,
            device=settings.device,
            box_threshold=settings.scorer_detector_box_threshold,
            text_threshold=settings.scorer_detector_text_threshold,
        )
    return Scorer(
        semantic=semantic,
        detector=detector,
        images=image_store(settings),
        limits=settings.scoring_limits(),
        decode_max_side=settings.scorer_decode_max_side,
    )
