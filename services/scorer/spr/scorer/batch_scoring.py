"""Several planned regions, one call per model: the queue worker's batched path.

The synchronous counterpart of :class:`spr.scorer.batching.BatchedScorer` (which batches concurrent
HTTP requests on an event loop): the worker already holds a batch of candidate groups, so their regions
go through the CLIP image side in one forward, their unique box-free texts through the text side in
one forward, and their phrases through the detector in one call. Each image file is decoded once per
batch (several regions of one image are the norm). Results match :meth:`Scorer.score` on each region
alone up to floating-point batching noise.
"""

from __future__ import annotations

from collections.abc import Sequence

from spr.scorer.errors import InputError
from spr.scorer.images import ImageKey, ModelImage, decode_for_models
from spr.scorer.scoring import Scorer, ScoringInput, ScoringPlan, detections_to_original
from spr.scorer.semantic import RegionEmbedding, Vector
from spr.shared.boxes import BoxT
from spr.shared.scoring_api import ScoreResponse


def score_plans(
    scorer: Scorer, planned: Sequence[tuple[ScoringInput, ScoringPlan]], *, field_prefix: str = ""
) -> list[ScoreResponse | InputError]:
    """The response of each (input, plan), in order; an image that cannot be decoded gives its InputError.

    A model failure raises for the whole batch (the caller retries the regions one by one).
    """
    errors: dict[int, InputError] = {}
    decoded: dict[int, ModelImage] = {}
    by_key: dict[ImageKey, ModelImage] = {}
    for index, (inputs, plan) in enumerate(planned):
        if not plan.needs_pixels:
            continue
        key = inputs.image_key
        image = None if key is None else by_key.get(key)
        if image is None:
            try:
                image = decode_for_models(
                    inputs.image, max_side=scorer.decode_max_side, field=f"{field_prefix}image"
                )
            except InputError as exc:
                errors[index] = exc
                continue
            if key is not None:
                by_key[key] = image
        decoded[index] = image

    regions: dict[int, RegionEmbedding] = {}
    texts: dict[int, Vector] = {}
    semantic = scorer.semantic
    wanted = [i for i in decoded if planned[i][1].texts]
    if semantic is not None and wanted:
        embedded = semantic.embed_regions(
            [(decoded[i].rgb, decoded[i].to_model(planned[i][1].region)) for i in wanted]
        )
        unique = list(dict.fromkeys(text for i in wanted for text in planned[i][1].texts))
        vectors = semantic.embed_texts(unique)
        row = {text: r for r, text in enumerate(unique)}
        for i, embedding in zip(wanted, embedded, strict=True):
            regions[i] = embedding
            texts[i] = vectors[[row[text] for text in planned[i][1].texts]]

    detections: dict[int, dict[str, list[BoxT]]] = {}
    detector = scorer.detector
    wanted = [i for i in decoded if planned[i][1].phrases]
    if detector is not None and wanted:
        found = detector.detect([(decoded[i].rgb, planned[i][1].phrases) for i in wanted])
        for i, boxes in zip(wanted, found, strict=True):
            detections[i] = detections_to_original(boxes, decoded[i])

    results: list[ScoreResponse | InputError] = []
    for index, (_, plan) in enumerate(planned):
        if index in errors:
            results.append(errors[index])
            continue
        results.append(
            scorer.finish(
                plan,
                region_embedding=regions.get(index),
                text_embeddings=texts.get(index),
                detections=detections.get(index),
            )
        )
    return results
