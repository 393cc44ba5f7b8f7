"""Where the scorer's CPU goes per request with the tiny CLIP, without HTTP or threads in the way.

``bench/scorer_load.py`` measures the service's CPU per request over HTTP and the raw batched CLIP
forward (``embed_regions`` + ``embed_texts``) on the same bodies; this script runs the steps of one
``POST /score`` in order, in one thread of this process, on the same bodies (16 of them, 8 ferret
candidates, lambda 0.8, batches of 8 regions as the micro-batcher fills them), and times each step
with ``time.process_time``: what the service does besides the model, per category. The difference
between the service's CPU per request and the sum printed here is HTTP / ASGI, hand-offs between
threads and the batcher's waits.

    .venv/bin/python bench/scorer_clip_breakdown.py [--seconds 5] [--core 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scorer_load import make_bodies, write_images
from spr.scorer.images import ImageStore, decode_for_models
from spr.scorer.limits import DEFAULT_DECODE_MAX_SIDE
from spr.scorer.scoring import Scorer, ScoringInput
from spr.scorer.semantic import SemanticScorer
from spr.shared import formats
from spr.shared.scoring_api import ScoreRequest
from spr.shared.tiny import build_tiny_models

REGIONS_PER_BATCH = 8
MAX_SIDE = DEFAULT_DECODE_MAX_SIDE


def _inputs(request: ScoreRequest, store: ImageStore) -> ScoringInput:
    image, key = store.open_path_keyed(str(request.image.path))
    return ScoringInput.of_request(request, image, image_key=key)


def breakdown(bodies: list[bytes], root: Path, clip: SemanticScorer, seconds: float) -> dict[str, float]:
    """CPU ms per request by step, the steps of the service's CLIP path run in order."""
    scorer = Scorer(semantic=clip)
    store = ImageStore(root, max_image_bytes=1 << 30, max_image_pixels=1 << 30)
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        out = fn(*args, **kwargs)
        spent[name] += time.process_time() - started
        return out

    def one_pass() -> int:
        for start in range(0, len(bodies), REGIONS_PER_BATCH):
            chunk = bodies[start : start + REGIONS_PER_BATCH]
            requests = [timed("JSON decode + validate", ScoreRequest.model_validate_json, b) for b in chunk]
            inputs = [timed("image open (header)", _inputs, r, store) for r in requests]
            plans = [timed("plan: parse, strip boxes, S_loc, refine", scorer.plan, i) for i in inputs]
            for i in inputs:  # the service's strip_boxes is inside plan: timed again here, alone
                timed(
                    "  of which strip_boxes (semantic text prep)",
                    lambda i=i: [formats.strip_boxes(t, i.format) for _, t in i.candidates],
                )
            decoded = [
                timed(
                    "image decode (the LRU skips this on a hit)",
                    decode_for_models,
                    i.image,
                    max_side=DEFAULT_DECODE_MAX_SIDE,
                )
                for i in inputs
            ]
            items = [(d.rgb, d.to_model(p.region)) for d, p in zip(decoded, plans, strict=True)]
            texts = [t for p in plans for t in p.texts]
            regions = timed("CLIP image side (embed_regions)", clip.embed_regions, items)
            timed("  of which crops + resize + normalize (_pixels)", _preprocess, clip, items)
            vectors = timed("CLIP text side (embed_texts)", clip.embed_texts, texts)
            timed("  of which tokenization", clip.tokenizer, texts, add_special_tokens=True, verbose=False)
            offset = 0
            for plan, region in zip(plans, regions, strict=True):
                rows = vectors[offset : offset + len(plan.texts)]
                offset += len(plan.texts)
                response = timed(
                    "finish: cosines, S_loc matches, pair",
                    scorer.finish,
                    plan,
                    region_embedding=region,
                    text_embeddings=np.asarray(rows, dtype=np.float32),
                )
                timed("response encoding", response.model_dump_json)
        return len(bodies)

    one_pass()  # warm-up
    spent.clear()
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += one_pass()
    return {name: 1000 * s / done for name, s in spent.items()}


def _preprocess(clip: SemanticScorer, items: list[tuple[Any, Any]]) -> None:
    """What ``embed_regions`` does before its forward: the crops, then the image processor."""
    crops = []
    for image, region in items:
        crops.append(image.crop(tuple(int(v) for v in region)))
    with torch.inference_mode():
        clip._pixels([image for image, _ in items] + crops)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time")
    parser.add_argument("--core", type=int, default=None, help="pin this process to one CPU core")
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "data"
        root.mkdir()
        rng = np.random.default_rng(0)
        bodies = make_bodies(write_images(root, rng), rng, 0.8)
        models = build_tiny_models(tmp_path / "models")
        clip = SemanticScorer.load(models.clip, device="cpu")
        ms = breakdown(bodies, root, clip, args.seconds)
    total = sum(v for k, v in ms.items() if not k.startswith("  "))
    print(f"CPU per request, tiny CLIP, {REGIONS_PER_BATCH} regions per forward (process_time, 1 thread)")
    for name, value in ms.items():
        share = "" if name.startswith("  ") else f"{100 * value / total:5.1f} %"
        print(f"  {name:50s} {value:6.3f} ms {share}")
    print(f"  {'sum of the steps':50s} {total:6.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
