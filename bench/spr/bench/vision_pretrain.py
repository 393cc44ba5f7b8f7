"""Dense pre-training of the baseline's vision tower: every image token learns which colour and which
shape covers it, and that shape's box.

Why: trained only through box answers, a small randomly initialised model learned to find *an* object
but picked among several at random (docs/RESULTS-crowded.md, and our own curve). One box answer is one
label per image; the per-token task gives every image 64 labels and makes the image tokens carry the
words the expressions use and the box the answer needs (as a dense detector's features do), so the
text model has to learn which token an expression picks and how to write its box. The heads used here
are thrown away afterwards; the checkpoint keeps the trained vision tower (patch embedding, blocks,
merger).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisionPretrainConfig:
    """``steps`` optimizer steps (0: skip) of ``batch_size`` fresh scenes with ``min_objects..max_objects``
    shapes; a token's label is the shape whose box covers at least ``min_cover`` of the token's cell
    (the largest such share), else background. ``eval_scenes`` fresh scenes measure token accuracy."""

    steps: int = 0
    batch_size: int = 32
    learning_rate: float = 2e-3
    min_objects: int = 1
    max_objects: int = 9
    min_cover: float = 0.25
    box_weight: float = 0.0
    eval_scenes: int = 64


def token_labels(
    shapes: list[tuple[str, tuple[int, int, int, int], int]],
    side: int,
    grid: int,
    min_cover: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour class, shape class and box per cell of a ``grid`` x ``grid`` split of a ``side``-pixel
    square image, row-major (the order of Qwen2-VL's merged image tokens). Class 0 is background;
    colour ``i`` is ``1 + COLOURS`` index, shape ``j`` is ``1 + SHAPES`` index. Input boxes are pixels
    (x1, y1, x2, y2); the returned boxes (cells x 4) are fractions of the side, zeros on background."""
    from spr.shared.datasets.synthetic import COLOURS, SHAPES

    colours = list(COLOURS)
    cell = side / grid
    colour = np.zeros(grid * grid, dtype=np.int64)
    shape = np.zeros(grid * grid, dtype=np.int64)
    best = np.zeros(grid * grid)
    boxes = np.zeros((grid * grid, 4), dtype=np.float32)
    for name, (x1, y1, x2, y2), _ in shapes:
        colour_name, shape_name = name.split(" ")
        for row in range(grid):
            for col in range(grid):
                dx = min(x2, (col + 1) * cell) - max(x1, col * cell)
                dy = min(y2, (row + 1) * cell) - max(y1, row * cell)
                cover = max(dx, 0.0) * max(dy, 0.0) / (cell * cell)
                index = row * grid + col
                if cover >= min_cover and cover > best[index]:
                    best[index] = cover
                    colour[index] = 1 + colours.index(colour_name)
                    shape[index] = 1 + SHAPES.index(shape_name)
                    boxes[index] = (x1 / side, y1 / side, x2 / side, y2 / side)
    return colour, shape, boxes


class _Scenes:
    """Batches of fresh scenes as vision-tower inputs and per-token labels."""

    def __init__(self, processor: Any, side: int, config: VisionPretrainConfig) -> None:
        self.processor = processor
        self.side = side
        self.config = config

    def batch(self, rng: np.random.Generator, count: int) -> tuple[Any, Any, Any, Any, Any]:
        import torch
        from spr.shared.datasets.synthetic import draw_scene

        pictures, drawn_shapes = [], []
        for _ in range(count):
            objects = int(rng.integers(self.config.min_objects, self.config.max_objects + 1))
            picture, drawn = draw_scene(rng, self.side, self.side, objects)
            pictures.append(picture)
            drawn_shapes.append(drawn)
        inputs = self.processor.image_processor(images=pictures, return_tensors="pt")
        _, height, width = inputs["image_grid_thw"][0].tolist()
        if height != width:
            raise ValueError(f"expected a square token grid, got {height} x {width} patches")
        grid = height // self.processor.image_processor.merge_size
        labels = [token_labels(drawn, self.side, grid, self.config.min_cover) for drawn in drawn_shapes]
        colours, shapes, boxes = (np.concatenate(part) for part in zip(*labels, strict=True))
        return (
            inputs["pixel_values"],
            inputs["image_grid_thw"],
            torch.from_numpy(colours),
            torch.from_numpy(shapes),
            torch.from_numpy(boxes),
        )


def pretrain_vision(
    model: Any, processor: Any, side: int, config: VisionPretrainConfig, device: str, seed: int
) -> dict[str, float]:
    """Train ``model.model.visual`` (in place) on per-token colour and shape labels of fresh
    ``side``-pixel scenes; returns token metrics on fresh scenes after training (fractions):
    ``colour_acc``/``shape_acc`` over object tokens, ``background_acc`` over the others, and
    ``box_iou`` (with ``box_weight`` > 0): mean IoU of the boxes object tokens predict."""
    import torch
    from spr.shared.datasets.synthetic import COLOURS, SHAPES

    visual = model.model.visual
    hidden = int(model.config.text_config.hidden_size)

    heads = torch.nn.ModuleDict(
        {
            "colour": torch.nn.Linear(hidden, len(COLOURS) + 1),
            "shape": torch.nn.Linear(hidden, len(SHAPES) + 1),
            "box": torch.nn.Linear(hidden, 4),
        }
    ).to(device)
    for param in visual.parameters():
        param.requires_grad = True
    params = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    scenes = _Scenes(processor, side, config)
    rng = np.random.default_rng([seed, 13])
    visual.train()
    for step in range(1, config.steps + 1):
        pixels, grid_thw, colour, shape, box = (t.to(device) for t in scenes.batch(rng, config.batch_size))
        tokens = visual(pixels, grid_thw=grid_thw).pooler_output
        objects = colour > 0
        loss: Any = torch.nn.functional.cross_entropy(heads["colour"](tokens), colour)
        loss = loss + torch.nn.functional.cross_entropy(heads["shape"](tokens), shape)
        if config.box_weight:
            box_loss = torch.nn.functional.l1_loss(heads["box"](tokens[objects]), box[objects])
            loss = loss + config.box_weight * box_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 50 == 0 or step == config.steps:
            logger.info("vision pre-training step %d/%d: loss %.4f", step, config.steps, float(loss.detach()))
    visual.eval()
    with torch.inference_mode():
        held_out = np.random.default_rng([seed, 14])
        pixels, grid_thw, colour, shape, box = (
            t.to(device) for t in scenes.batch(held_out, config.eval_scenes)
        )
        tokens = visual(pixels, grid_thw=grid_thw).pooler_output
        colour_hit = heads["colour"](tokens).argmax(-1) == colour
        shape_hit = heads["shape"](tokens).argmax(-1) == shape
        objects = colour > 0
        ious = _iou(heads["box"](tokens[objects]), box[objects])
    metrics = {
        "colour_acc": float(colour_hit[objects].float().mean()),
        "shape_acc": float(shape_hit[objects].float().mean()),
        "background_acc": float((colour_hit & shape_hit)[~objects].float().mean()),
    }
    if config.box_weight:
        metrics["box_iou"] = float(ious.mean())
    logger.info("vision pre-training: token accuracy on fresh scenes %s", metrics)
    return metrics


def _iou(predicted: Any, target: Any) -> Any:
    """Row-wise IoU of (n, 4) boxes (x1, y1, x2, y2); an inverted predicted box counts as empty."""
    import torch

    left = torch.maximum(predicted[:, 0], target[:, 0])
    top = torch.maximum(predicted[:, 1], target[:, 1])
    right = torch.minimum(predicted[:, 2], target[:, 2])
    bottom = torch.minimum(predicted[:, 3], target[:, 3])
    inter = (right - left).clamp(min=0) * (bottom - top).clamp(min=0)
    area_p = (predicted[:, 2] - predicted[:, 0]).clamp(min=0) * (predicted[:, 3] - predicted[:, 1]).clamp(
        min=0
    )
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    return inter / (area_p + area_t - inter).clamp(min=1e-9)
