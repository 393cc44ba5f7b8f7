"""Throughput of ``spr.reward`` (the GRPO reward function) per backend, on one simulated GRPO step.

One step = ``--tasks`` region tasks x ``--group`` completions each (TRL's num_generations), ferret
boxes, the tiny offline CLIP for S_sem (lambda 0.8). Measured, each after a warm-up call, best of
``--repeats``:

- in-process: the scorer's library in this process, one batched forward for the whole step;
- HTTP, grouped: a real scorer server (uvicorn on a thread here), one ``POST /score`` per task with its
  whole group (what ``SprReward`` sends), concurrent over a pooled client;
- HTTP, one per completion: ``max_candidates=1``, the naive client (a request per completion).

Printed: completions/s per backend and the ratios against in-process and against one-per-completion.
The server shares this process's CPU with the client, so HTTP figures include the client's work.

    .venv/bin/python bench/reward_throughput.py [--tasks 8] [--group 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def make_step(root: Path, tasks: int, group: int, seed: int) -> tuple[list[str], list[str]]:
    """Images under ``root`` and one step's (completions, task JSON per completion)."""
    from PIL import Image, ImageDraw
    from spr.shared.reward_api import RewardTask
    from spr.shared.schemas import AnnotatedObject
    from spr.shared.scoring_api import ImageInput

    rng = random.Random(seed)
    completions: list[str] = []
    columns: list[str] = []
    for index in range(tasks):
        image = Image.new("RGB", (320, 240), (rng.randrange(256), 90, 160))
        draw = ImageDraw.Draw(image)
        boxes = []
        for _ in range(4):
            x, y = rng.randrange(0, 240), rng.randrange(0, 170)
            box = (float(x), float(y), float(x + rng.randrange(20, 80)), float(y + rng.randrange(20, 70)))
            draw.rectangle(box, fill=(rng.randrange(256), rng.randrange(256), 40))
            boxes.append(box)
        name = f"img-{index}.png"
        image.save(root / name)
        objects = [AnnotatedObject(label=f"shape {k}", box=box) for k, box in enumerate(boxes)]
        task = RewardTask(
            image=ImageInput(path=name), region=(0.0, 0.0, 320.0, 240.0), objects=objects, format="ferret"
        ).to_json()
        for _ in range(group):
            parts = []
            for k, (x1, y1, x2, y2) in enumerate(boxes):
                jitter = [rng.randint(-15, 15) for _ in range(4)]
                grid = [
                    int(min(999, max(0, v / size * 1000 + j)))
                    for v, size, j in zip((x1, y1, x2, y2), (320, 240, 320, 240), jitter, strict=True)
                ]
                parts.append(f"a shape {k} {grid}")
            completions.append(" and ".join(parts[: rng.randint(1, 4)]) + ".")
            columns.append(task)
    return completions, columns


def timed(reward: object, completions: list[str], tasks: list[str], repeats: int) -> float:
    """Best wall-clock seconds of one step (after a warm-up call)."""
    reward.values(completions, tasks)  # type: ignore[attr-defined]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        reward.values(completions, tasks)  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from spr.reward import SprReward
    from spr.reward.backends import HttpBackend, InProcessBackend
    from spr.scorer.app import create_app
    from spr.scorer.settings import ScorerSettings
    from spr.scorer.thread_server import ServerThread
    from spr.shared.tiny import build_tiny_models

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_tiny_models(root / "models", seed=0)
        data = root / "data"
        data.mkdir()
        completions, tasks = make_step(data, args.tasks, args.group, seed=0)
        n = len(completions)
        results: dict[str, float] = {}
        local = SprReward(InProcessBackend.load(data_root=data, semantic_model=Path(models.clip)))
        results["in-process"] = timed(local, completions, tasks, args.repeats)
        settings = ScorerSettings(
            data_root=data,
            scorer_semantic_model=str(models.clip),
            scorer_max_candidates=64,
            scorer_auth="none",  # a loopback server inside this process
        )
        with ServerThread(create_app(settings)) as server:
            grouped = SprReward(HttpBackend(server.url, max_candidates=64))
            results["http, one request per task"] = timed(grouped, completions, tasks, args.repeats)
            grouped.close()
            single = SprReward(HttpBackend(server.url, max_candidates=1))
            results["http, one request per completion"] = timed(single, completions, tasks, args.repeats)
            single.close()
    base = results["in-process"]
    naive = results["http, one request per completion"]
    step = f"{args.tasks} tasks x {args.group} completions = {n} completions"
    print(f"one GRPO step: {step} (tiny CLIP, lambda 0.8)")
    for name, seconds in results.items():
        print(
            f"  {name:34s} {n / seconds:8.1f} completions/s   {seconds * 1000:8.1f} ms/step   "
            f"x{base / seconds:5.2f} vs in-process   x{naive / seconds:5.2f} vs one-per-completion"
        )
    print(json.dumps({name: round(n / seconds, 1) for name, seconds in results.items()}))


if __name__ == "__main__":
    main()
