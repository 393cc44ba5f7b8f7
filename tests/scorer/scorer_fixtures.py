"""Helpers of the scorer tests: a data root with images, hand-computable GT boxes and texts, groups.

Image "img.png" is 200 x 100 pixels. On that image the 0-1000 grids (ferret, qwen2vl, qwen3vl, internvl) map
a value v to x = v / 1000 * 200 and y = v / 1000 * 100; shikra's [0, 1] decimals are of the image
padded to a 200 x 200 square (50 px above it), so x = s * 200 and y = s * 200 - 50. Every box below is
exact in every format:

- GT_CUP (10, 10, 50, 50)  = ferret [50, 100, 250, 500]
- GT_DOG (60, 20, 140, 90) = ferret [300, 200, 700, 900]
- LOOSE_CUP (10, 10, 60, 50) = ferret [50, 100, 300, 500]: IoU with GT_CUP = 1600 / 2000 = 0.8
- FAR_DOG (60, 20, 100, 60) = ferret [300, 200, 500, 600]: IoU with GT_DOG = 1600 / 5600 < 0.5
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from spr.shared.schemas import (
    AnnotatedObject,
    Candidate,
    CandidateGroup,
    ImageRef,
    PromptRecord,
    RegionTask,
)

IMAGE = "img.png"
WIDTH, HEIGHT = 200, 100
REGION = (0.0, 0.0, 160.0, 100.0)
GT_CUP = (10.0, 10.0, 50.0, 50.0)
GT_DOG = (60.0, 20.0, 140.0, 90.0)
OBJECTS = [AnnotatedObject(label="cup", box=GT_CUP), AnnotatedObject(label="dog", box=GT_DOG)]

# (grid values) of the boxes above, shared by the 0-1000 formats.
CUP = (50, 100, 250, 500)
LOOSE_CUP = (50, 100, 300, 500)
DOG = (300, 200, 700, 900)
FAR_DOG = (300, 200, 500, 600)


def grounded(fmt: str, phrase: str, v: tuple[int, int, int, int]) -> str:
    """``phrase`` with box ``v`` (0-1000 grid values) in the syntax of ``fmt``."""
    a, b, c, d = v
    if fmt == "ferret":
        return f"{phrase} [{a}, {b}, {c}, {d}]"
    if fmt == "shikra":
        # Pixels (v / 1000 of the image) moved into Shikra's square: side 200, the image 50 px down.
        def square(v: int, size: int, offset: int) -> str:
            return f"{(v / 1000 * size + offset) / 200:.3f}"

        xs = square(a, WIDTH, 0), square(c, WIDTH, 0)
        ys = square(b, HEIGHT, 50), square(d, HEIGHT, 50)
        return f"{phrase} [{xs[0]},{ys[0]},{xs[1]},{ys[1]}]"
    if fmt == "qwen2vl":
        return f"<|object_ref_start|>{phrase}<|object_ref_end|><|box_start|>({a},{b}),({c},{d})<|box_end|>"
    if fmt == "internvl":
        return f"<ref>{phrase}</ref><box>[[{a}, {b}, {c}, {d}]]</box>"
    if fmt == "qwen3vl":
        return f'{{"bbox_2d": [{a}, {b}, {c}, {d}], "label": "{phrase}"}}'
    raise ValueError(fmt)


def write_images(root: Path) -> None:
    """img.png (200 x 100, a red square where the cup is, a green one where the dog is) and friends."""
    from PIL import Image, ImageDraw

    root.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (WIDTH, HEIGHT), (30, 60, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle(GT_CUP, fill=(230, 30, 30))
    draw.ellipse(GT_DOG, fill=(40, 210, 60))
    image.save(root / IMAGE)
    (root / "sub").mkdir(exist_ok=True)
    image.save(root / "sub" / "nested.png")
    (root / "not-an-image.png").write_bytes(b"this is text")
    outside = root.parent / f"{root.name}-outside.png"
    image.save(outside)
    (root / "escape.png").symlink_to(outside)


def image_base64(root: Path, name: str = IMAGE) -> str:
    return base64.b64encode((root / name).read_bytes()).decode()


def png_base64(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (0, 0, 0)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def score_request(candidates: list[tuple[str, str]], fmt: str = "ferret", **overrides: Any) -> dict[str, Any]:
    """A POST /score body on img.png with the two GT objects."""
    body: dict[str, Any] = {
        "image": {"path": IMAGE},
        "region": list(REGION),
        "objects": [{"label": o.label, "box": list(o.box)} for o in OBJECTS],
        "candidates": [{"id": cid, "text": text} for cid, text in candidates],
        "format": fmt,
    }
    body.update(overrides)
    return body


def candidate_group(
    task_id: str, texts: list[str], *, image: str = IMAGE, fmt: str = "ferret"
) -> CandidateGroup:
    """A candidate group for img.png (ferret texts by default)."""
    task = RegionTask(
        task_id=task_id,
        image=ImageRef(path=image, width=WIDTH, height=HEIGHT),
        region=REGION,
        objects=OBJECTS,
        source="scorer-tests",
    )
    prompt = "Describe the region [0, 0, 800, 999] in detail, with boxes."
    return CandidateGroup(
        task=task,
        model_id="tiny-qwen2vl",
        format=fmt,  # type: ignore[arg-type]
        canonical_prompt=prompt,
        prompts=[PromptRecord(prompt_id="box", type="box", text=prompt, images=1)],
        candidates=[
            Candidate(
                id=f"{task_id}-c{i}",
                prompt_id="box",
                prompt_type="box",
                sample_index=i,
                seed=i,
                text=text,
                phrases=[],
            )
            for i, text in enumerate(texts)
        ],
    )


DINO_WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ".",
    "a",
    "red",
    "cup",
    "dog",
    "and",
    "green",
    "small",
]


def build_tiny_grounding_dino(out: Path, seed: int = 0) -> Path:
    """A random, tiny GroundingDinoForObjectDetection + processor (BERT word-piece vocabulary) in ``out``.

    Sizes are the smallest the architecture accepts: d_model 32 (GroupNorm has 32 groups), 4 feature
    levels on a 128-pixel input (the smallest level still has more than one cell), 2 decoder layers.
    """
    import torch
    import transformers

    # transformers' constructors are partly untyped: reach them through an Any-typed module handle.
    tf: Any = transformers

    tokenizer = tf.BertTokenizerFast(vocab={word: i for i, word in enumerate(DINO_WORDS)})
    image_processor = tf.GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 128})
    processor = tf.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = tf.GroundingDinoConfig(
        backbone_config=tf.SwinConfig(
            image_size=128,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            out_indices=[2, 3, 4],
        ),
        text_config=tf.BertConfig(
            vocab_size=len(DINO_WORDS),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=1,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        num_queries=20,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        d_model=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
        disable_custom_kernels=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
