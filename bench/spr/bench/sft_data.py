"""Supervised examples for the baseline: REC answers and grounded region descriptions, tokenized the
way the generator and `spr eval` prompt the model.

Training draws a fresh scene for every example group (:class:`SceneExamples`, :class:`SceneBatches`):
with a fixed set of a few hundred images the model memorised them and learned nothing that transferred
to held-out images. Files (:func:`rec_examples`, :func:`region_examples`) serve tests and evaluation.

Prompts are the ones inference uses, so the model is trained on exactly what it is later asked: REC
under `spr eval rec`'s template for the format, region descriptions under the generator's canonical
template (type (a)). The image comes first, then the text, through the processor's chat template with
the generation prompt; the answer follows, closed by ``<|im_end|>``. Labels mask everything but the
answer, so the loss is on answer tokens only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from spr.bench.expressions import sample_expressions
from spr.shared.regions import RegionConfig
from spr.shared.schemas import AnnotatedObject, GroundingFormat, ImageRef, RegionTask, Size

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


@dataclass(frozen=True)
class SftExample:
    """One supervised example: ``image`` relative to the data root (or, for a drawn scene, a name and
    the RGB ``picture`` itself), the user ``prompt``, the ``answer`` (boxes in the format's syntax) and
    ``kind`` ("rec" or "regions")."""

    image: str
    prompt: str
    answer: str
    kind: str
    picture: Any = None


def rec_examples(path: Path, fmt: GroundingFormat = "qwen2vl") -> list[SftExample]:
    """REC examples of a jsonl file: the answer is the referent's box alone."""
    from spr.eval.data import read_rec_examples
    from spr.eval.prompting import RecPrompts
    from spr.shared.formats import render_box

    prompts = RecPrompts.load()
    out = []
    for example in read_rec_examples(path):
        if example.width is None or example.height is None:
            raise ValueError(f"{path}: example {example.id} needs width and height")
        size = Size(width=example.width, height=example.height)
        answer = render_box(example.box, fmt, image_size=size)
        out.append(SftExample(example.image, prompts.text(fmt, example.expression), answer, "rec"))
    return out


def region_example(task: RegionTask, canonical_text: str, fmt: GroundingFormat = "qwen2vl") -> SftExample:
    """The supervised example of one region task: the answer names every GT object with its box, in
    reading order (top to bottom, then left to right), so the target text is a function of the image."""
    from spr.shared.formats import render, render_box

    size = Size(width=task.image.width, height=task.image.height)
    prompt = canonical_text.format(region=render_box(task.region, fmt, image_size=size))
    objects = sorted(task.objects, key=lambda obj: (obj.box[1], obj.box[0]))
    answer = render([(obj.label, [obj.box]) for obj in objects], fmt, image_size=size)
    return SftExample(task.image.path, prompt, answer, "regions")


def region_examples(path: Path, fmt: GroundingFormat = "qwen2vl") -> list[SftExample]:
    """Region tasks of a jsonl file as supervised examples (:func:`region_example`)."""
    from spr.eval.data import read_jsonl
    from spr.generator.prompts import PromptSet

    canonical = PromptSet.load().canonical.text
    return [region_example(task, canonical, fmt) for task in read_jsonl(path, RegionTask, "RegionTask")]


@dataclass(frozen=True)
class SceneSpec:
    """Scenes drawn for one SFT stage: ``image_size`` pixels square, ``min_objects..max_objects``
    shapes, example ``kinds`` ("rec", "regions"; regions are built by ``regions``, by default the
    paper's rule, which needs >= 5 objects), ``expressions`` REC examples per scene,
    ``distinct_colours`` as in :func:`spr.shared.datasets.synthetic.draw_scene`."""

    image_size: int
    min_objects: int
    max_objects: int
    kinds: tuple[str, ...]
    expressions: int = 3
    distinct_colours: bool = False
    regions: RegionConfig = field(default_factory=RegionConfig)


class SceneExamples:
    """Draws a fresh scene and its supervised examples (REC and region descriptions) with the
    prompts inference uses; boxes are the scene's exact pixel boxes rendered in ``fmt``."""

    def __init__(self, spec: SceneSpec, fmt: GroundingFormat = "qwen2vl") -> None:
        from spr.eval.prompting import RecPrompts
        from spr.generator.prompts import PromptSet

        self.spec = spec
        self.fmt = fmt
        self.rec_prompts = RecPrompts.load()
        self.canonical = PromptSet.load().canonical.text

    def draw(self, rng: np.random.Generator) -> list[SftExample]:
        """One scene's examples (all from the same picture); the scene depends on ``rng`` alone."""
        from spr.shared.datasets.synthetic import draw_scene
        from spr.shared.formats import render_box
        from spr.shared.regions import build_regions

        spec = self.spec
        side = spec.image_size
        count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
        picture, shapes = draw_scene(rng, side, side, count, distinct_colours=spec.distinct_colours)
        objects = [AnnotatedObject(label=name, box=box) for name, box, _ in shapes]
        size = Size(width=side, height=side)
        name = f"scene/{int(rng.integers(2**62))}"
        out: list[SftExample] = []
        if "rec" in spec.kinds:
            for expression in sample_expressions(objects, rng, count=spec.expressions):
                answer = render_box(objects[expression.target].box, self.fmt, image_size=size)
                prompt = self.rec_prompts.text(self.fmt, expression.text)
                out.append(SftExample(name, prompt, answer, "rec", picture))
        if "regions" in spec.kinds:
            image = ImageRef(path=name, width=side, height=side)
            seed = int(rng.integers(2**31))
            for task in build_regions(image, objects, config=spec.regions, seed=seed):
                example = region_example(task, self.canonical, self.fmt)
                out.append(SftExample(name, example.prompt, example.answer, "regions", picture))
        return out


def scene_batches(
    encoder: Encoder, scenes: SceneExamples, batch_size: int, rng: np.random.Generator
) -> Iterator[dict[str, Any]]:
    """Endless encoded batches of ``batch_size`` examples from fresh scenes. Every example of a scene
    goes into the batch (fewer pictures to draw per step); a scene that gives none is skipped."""
    pending: list[SftExample] = []
    while True:
        while len(pending) < batch_size:
            pending += scenes.draw(rng)
        yield encoder.batch(pending[:batch_size])
        pending = pending[batch_size:]


class Encoder:
    """Turns examples into model inputs with a Qwen2-VL processor (images read from ``data_root``)."""

    def __init__(self, processor: Any, data_root: Path) -> None:
        self.processor = processor
        self.data_root = data_root
        tokenizer = processor.tokenizer
        self.pad_id = int(tokenizer.pad_token_id)

    def _one(self, example: SftExample) -> tuple[list[int], list[int], list[int], Any, Any]:
        from PIL import Image

        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example.prompt}]}
        ]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if example.picture is not None:
            inputs = self.processor(text=[text], images=[example.picture], return_tensors="pt")
        else:
            with Image.open(self.data_root / example.image) as image:
                inputs = self.processor(text=[text], images=[image.convert("RGB")], return_tensors="pt")
        prompt_ids = inputs["input_ids"][0].tolist()
        answer_ids = self.processor.tokenizer(example.answer + END_OF_TURN, add_special_tokens=False)[
            "input_ids"
        ]
        ids = prompt_ids + list(answer_ids)
        labels = [IGNORE_INDEX] * len(prompt_ids) + list(answer_ids)
        # Which tokens are image tokens: M-RoPE positions are computed from it; answers hold none.
        types = inputs["mm_token_type_ids"][0].tolist() + [0] * len(answer_ids)
        return ids, labels, types, inputs["pixel_values"], inputs["image_grid_thw"]

    def batch(self, examples: Sequence[SftExample]) -> dict[str, Any]:
        """A right-padded batch: input_ids, attention_mask, labels, mm_token_type_ids, pixel_values,
        image_grid_thw."""
        import torch

        encoded = [self._one(example) for example in examples]
        width = max(len(item[0]) for item in encoded)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        token_types = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (ids, labs, types, _, _) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(labs)] = torch.tensor(labs)
            attention[row, : len(ids)] = 1
            token_types[row, : len(types)] = torch.tensor(types)
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            "mm_token_type_ids": token_types,
            "pixel_values": torch.cat([item[3] for item in encoded]),
            "image_grid_thw": torch.cat([item[4] for item in encoded]),
        }
