"""The scorer's semantic model for the benchmark: the tiny CLIP trained contrastively on region crops.

Pairs come from the world's ``train`` split: every annotated object's crop with its label ("red
circle"), and every region task's crop with T' of its reference description (the SFT answer with the
box syntax stripped, which is what the scorer compares a region with). Crops are resized to the vision
tower's square input without centre-cropping, as the scorer does. Loss: symmetric InfoNCE over the
batch, where texts equal to a row's own text count as positives (several crops share a label).

Retrieval accuracy is measured on ``val`` (never ``test``): object crops classified among every
category name (top-1), and region crops matched to their own description among all ``val`` regions
(image -> text, top-1). The folder gets ``clip.json`` with the config and those numbers, and is reused
when trained with the same config on the same world.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from spr.bench.world import World
from spr.shared.errors import SprError
from spr.shared.schemas import RegionTask, Size

logger = logging.getLogger(__name__)

CLIP_FILE = "clip.json"


@dataclass(frozen=True)
class ClipTrainConfig:
    """Optimizer steps (0: keep the random tiny CLIP), batch size and learning rate."""

    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 1e-3
    threads: int | None = None
    seed: int = 0


@dataclass
class ClipResult:
    model: Path
    retrieval: dict[str, float]
    seconds: float
    reused: bool = False


def _pairs(world: World, split: str) -> tuple[list[tuple[str, tuple[float, ...], str]], list[int]]:
    """(image path, crop box in pixels, text) pairs of a split, and which of them are region pairs."""
    from spr.eval.data import read_jsonl
    from spr.shared.datasets.coco import load_coco
    from spr.shared.formats import render, strip_boxes

    pairs: list[tuple[str, tuple[float, ...], str]] = []
    for image, objects in load_coco(world.annotations(split), data_root=world.root):
        pairs += [(image.path, tuple(obj.box), obj.label) for obj in objects]
    regions: list[int] = []
    for task in read_jsonl(world.regions(split), RegionTask, "RegionTask"):
        size = Size(width=task.image.width, height=task.image.height)
        ordered = sorted(task.objects, key=lambda obj: (obj.box[1], obj.box[0]))
        text = strip_boxes(
            render([(o.label, [o.box]) for o in ordered], "qwen2vl", image_size=size), "qwen2vl"
        )
        regions.append(len(pairs))
        pairs.append((task.image.path, tuple(task.region), text))
    return pairs, regions


class _Crops:
    """Crops as normalised tensors of the vision tower's input size (resized, never centre-cropped)."""

    def __init__(self, processor: Any, root: Path) -> None:
        self.side = int(processor.image_processor.crop_size["height"])
        self.mean = np.asarray(processor.image_processor.image_mean, dtype=np.float32)
        self.std = np.asarray(processor.image_processor.image_std, dtype=np.float32)
        self.root = root
        self._images: dict[str, Any] = {}

    def __call__(self, items: list[tuple[str, tuple[float, ...], str]]) -> Any:
        import torch
        from PIL import Image

        arrays = []
        for path, box, _ in items:
            if path not in self._images:
                with Image.open(self.root / path) as image:
                    self._images[path] = image.convert("RGB")
            x1, y1, x2, y2 = (round(v) for v in box)
            crop = (
                self._images[path]
                .crop((x1, y1, x2, y2))
                .resize((self.side, self.side), Image.Resampling.BICUBIC)
            )
            arrays.append((np.asarray(crop, dtype=np.float32) / 255.0 - self.mean) / self.std)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def train_clip(world: World, out: Path, base: Path, config: ClipTrainConfig) -> ClipResult:
    """Train the CLIP in folder ``base`` on the world's ``train`` split into ``out`` (or reuse ``out``)."""
    identity = json.loads(
        json.dumps({"clip": asdict(config) | {"threads": None}, "world": asdict(world.config)})
    )
    marker = out / CLIP_FILE
    if marker.is_file():
        record = json.loads(marker.read_text(encoding="utf-8"))
        if record.get("identity") != identity:
            raise SprError(f"{out} holds a CLIP trained with another config or world; use another folder")
        return ClipResult(out, record["retrieval"], float(record["seconds"]), reused=True)
    if out.exists():
        raise SprError(f"{out} exists but holds no finished CLIP ({CLIP_FILE}); remove it")
    import torch
    from transformers import CLIPModel, CLIPProcessor

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    auto_processor: Any = CLIPProcessor
    auto_model: Any = CLIPModel
    processor = auto_processor.from_pretrained(base)
    model = auto_model.from_pretrained(base, dtype=torch.float32)
    crops = _Crops(processor, world.root)
    pairs, _ = _pairs(world, "train")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    rng = np.random.default_rng([config.seed, 11])
    started = time.monotonic()
    model.train()
    for step in range(1, config.steps + 1):
        batch = [pairs[int(i)] for i in rng.integers(len(pairs), size=config.batch_size)]
        texts = [text for _, _, text in batch]
        tokens = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        output = model(pixel_values=crops(batch), **tokens)
        positives = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.float32)
        targets = positives / positives.sum(dim=1, keepdim=True)
        loss: Any = 0.5 * (
            torch.nn.functional.cross_entropy(output.logits_per_image, targets)
            + torch.nn.functional.cross_entropy(output.logits_per_text, targets)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            logger.info("CLIP step %d/%d: loss %.4f", step, config.steps, float(loss.detach()))
    model.eval()
    retrieval = evaluate_retrieval(model, processor, world, "val")
    seconds = time.monotonic() - started
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    record = {"identity": identity, "retrieval": retrieval, "seconds": seconds}
    (staging / CLIP_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    staging.rename(out)
    logger.info("CLIP trained in %.0f s; val retrieval %s", seconds, retrieval)
    return ClipResult(out, retrieval, seconds)


def evaluate_retrieval(model: Any, processor: Any, world: World, split: str) -> dict[str, float]:
    """Top-1 accuracy (fractions): object crop -> its category among all category names, and region
    crop -> its description among the split's regions."""
    import torch
    from spr.shared.datasets.synthetic import category_names

    pairs, region_rows = _pairs(world, split)
    crops = _Crops(processor, world.root)
    region_set = set(region_rows)
    objects = [pair for i, pair in enumerate(pairs) if i not in region_set]
    regions = [pairs[i] for i in region_rows]

    def embed_images(items: list[tuple[str, tuple[float, ...], str]]) -> Any:
        chunks = [
            model.get_image_features(pixel_values=crops(items[i : i + 64])) for i in range(0, len(items), 64)
        ]
        return torch.nn.functional.normalize(torch.cat([_tensor(c) for c in chunks]), dim=-1)

    def embed_texts(texts: list[str]) -> Any:
        tokens = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        return torch.nn.functional.normalize(_tensor(model.get_text_features(**tokens)), dim=-1)

    with torch.inference_mode():
        names = category_names()
        label_index = torch.tensor([names.index(label) for _, _, label in objects])
        object_hits = (embed_images(objects) @ embed_texts(names).T).argmax(dim=1) == label_index
        result = {"object_top1": float(object_hits.float().mean()), "objects": float(len(objects))}
        if regions:
            sims = embed_images(regions) @ embed_texts([text for _, _, text in regions]).T
            hits = sims.argmax(dim=1) == torch.arange(len(regions))
            result |= {"region_top1": float(hits.float().mean()), "regions": float(len(regions))}
    return result


def _tensor(value: Any) -> Any:
    """transformers 5 may return a model output instead of a tensor from get_*_features."""
    return value if hasattr(value, "norm") else value.pooler_output
