"""Candidates/s for the scorer's CPU hot path: parse + S_loc + refine, single process, one core.

Synthetic descriptions: each region has 5 GT objects and 8 candidates (as the scorer gets them: a
region's candidates share its GT); each candidate has 6 boxed phrases (its own jitter of the GT boxes
plus one distractor), rendered in every grounding format. For every candidate the full path parses
the text, computes S_loc and the refined boxes (``localize_and_refine_many``: one call per region) and
writes the refined text (``replace_boxes``; refined boxes are the region's GT boxes, so after its
first candidate their coordinate text mostly comes from the formats' memo, as in the scorer).

Prints candidates/s per format for parse alone and for the full path, and the ratio of the two
(measured in the same process). Each is timed ``--repeat`` times over all the candidates, alternately,
and the fastest pass counts (as timeit does: on a shared machine other processes only ever slow a
pass down).

    .venv/bin/python bench/foundation_throughput.py [--candidates 20000] [--repeat 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from spr.shared import formats
from spr.shared.boxes import BoxT, localize_and_refine_many
from spr.shared.schemas import GROUNDING_FORMATS, GroundingFormat, Size

IMAGE = Size(width=640, height=480)
RESIZED = Size(width=644, height=476)  # a qwen25vl-style resized size (multiples of 28)


GROUP = 8  # candidates per region, as the generator samples them


def _make_region(rng: np.random.Generator) -> tuple[list[BoxT], list[list[tuple[str, list[BoxT]]]]]:
    gt: list[BoxT] = []
    for _ in range(5):
        x1, y1 = rng.uniform(0, 500), rng.uniform(0, 360)
        w, h = rng.uniform(20, 130), rng.uniform(20, 110)
        gt.append((x1, y1, min(x1 + w, 639.0), min(y1 + h, 479.0)))
    candidates: list[list[tuple[str, list[BoxT]]]] = []
    for _ in range(GROUP):
        phrases: list[tuple[str, list[BoxT]]] = []
        for i, (x1, y1, x2, y2) in enumerate(gt):
            j = rng.normal(0, 6, size=4)
            bx1, by1 = max(x1 + j[0], 0.0), max(y1 + j[1], 0.0)
            # jitter never inverts a box: keep at least 8 px per side
            box = (bx1, by1, min(max(x2 + j[2], bx1 + 8.0), 639.0), min(max(y2 + j[3], by1 + 8.0), 479.0))
            phrases.append((f"the {['red', 'blue', 'green', 'yellow', 'purple'][i]} shape", [box]))
        phrases.append(("a distractor", [(10.0, 10.0, 60.0, 50.0)]))
        candidates.append(phrases)
    return gt, candidates


def _regions(fmt: GroundingFormat, n: int, seed: int) -> list[tuple[list[BoxT], list[str]]]:
    """``n`` candidate texts (rounded up to whole regions) with their region's GT boxes."""
    rng = np.random.default_rng(seed)
    resized = RESIZED if formats.in_resized_image(fmt) else None
    out = []
    for _ in range(-(-n // GROUP)):
        gt, candidates = _make_region(rng)
        texts = [
            "The region shows "
            + formats.render(phrases, fmt, image_size=IMAGE, resized_size=resized)
            + " on a textured background."
            for phrases in candidates
        ]
        out.append((gt, texts))
    return out


def _time(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_format(fmt: GroundingFormat, n: int, seed: int, repeat: int = 1) -> dict[str, float]:
    regions = _regions(fmt, n, seed)
    count = sum(len(texts) for _, texts in regions)
    resized = RESIZED if formats.in_resized_image(fmt) else None

    def parse_only() -> None:
        for _, texts in regions:
            for text in texts:
                formats.parse(text, fmt, image_size=IMAGE, resized_size=resized)

    def full() -> None:
        for gt, texts in regions:
            parsed = [formats.parse(text, fmt, image_size=IMAGE, resized_size=resized) for text in texts]
            results = localize_and_refine_many(gt, [p.all_boxes() for p in parsed])
            for text, p, (_, refined) in zip(texts, parsed, results, strict=True):
                formats.replace_boxes(text, p, refined, fmt, image_size=IMAGE, resized_size=resized)

    t_parse = t_full = float("inf")
    for _ in range(repeat):
        t_parse = min(t_parse, _time(parse_only))
        t_full = min(t_full, _time(full))
    return {"parse_per_s": count / t_parse, "full_per_s": count / t_full, "full_over_parse": t_full / t_parse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--candidates", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="passes per measurement; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the issue asks
    print(
        f"candidates per format: {args.candidates} in regions of {GROUP} (5 GT objects; 6 boxed phrases "
        f"per candidate), one core, fastest of {args.repeat} passes"
    )
    print(f"{'format':<10} {'parse/s':>10} {'parse+S_loc+refine/s':>22} {'time ratio full:parse':>22}")
    totals = []
    for fmt in GROUNDING_FORMATS:
        r = bench_format(fmt, args.candidates, args.seed, args.repeat)
        totals.append(r["full_per_s"])
        print(f"{fmt:<10} {r['parse_per_s']:>10.0f} {r['full_per_s']:>22.0f} {r['full_over_parse']:>22.2f}")
    print(f"min over formats: {min(totals):.0f} candidates/s (aim >= 20,000)")


if __name__ == "__main__":
    main()
