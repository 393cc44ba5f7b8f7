"""Supervised examples for the baseline: REC answers and grounded region descriptions, tokenized the
way the generator and `spr eval` prompt the model.

Prompts are the ones inference uses, so the model is trained on exactly what it is later asked: REC
under `spr eval rec`'s template for the format, region descriptions under the generator's canonical
template (type (a)). The image comes first, then the text, through the processor's chat template with
the generation prompt; the answer follows, closed by ``<|im_end|>``. Labels mask everything but the
answer, so the loss is on answer tokens only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spr.shared.schemas import GroundingFormat, RegionTask, Size

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


@dataclass(frozen=True)
class SftExample:
    """One supervised example: ``image`` relative to the data root, the user ``prompt``, the
    ``answer`` (boxes in the format's syntax) and ``kind`` ("rec" or "regions")."""

    image: str
    prompt: str
    answer: str
    kind: str


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


def region_examples(path: Path, fmt: GroundingFormat = "qwen2vl") -> list[SftExample]:
    """Region tasks of a jsonl file: the answer names every GT object with its box, in reading order
    (top to bottom, then left to right), so the target text is a function of the image."""
    from spr.eval.data import read_jsonl
    from spr.generator.prompts import PromptSet
    from spr.shared.formats import render, render_box

    canonical = PromptSet.load().canonical
    out = []
    for task in read_jsonl(path, RegionTask, "RegionTask"):
        size = Size(width=task.image.width, height=task.image.height)
        prompt = canonical.text.format(region=render_box(task.region, fmt, image_size=size))
        objects = sorted(task.objects, key=lambda obj: (obj.box[1], obj.box[0]))
        answer = render([(obj.label, [obj.box]) for obj in objects], fmt, image_size=size)
        out.append(SftExample(task.image.path, prompt, answer, "regions"))
    return out


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
