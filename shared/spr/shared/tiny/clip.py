"""A tiny random CLIP checkpoint, built offline, for the scorer's semantic path.

:func:`build_clip` writes an ordinary Hugging Face CLIP folder (``config.json``, ``model.safetensors``,
the tokenizer files and ``processor_config.json``) that loads with ``CLIPModel.from_pretrained(dir)``
and ``AutoProcessor`` / ``CLIPProcessor.from_pretrained(dir)``, exactly like a production ViT-L/14
folder. The tokenizer is a CLIP-style BPE trained on the spot (see :mod:`spr.shared.tiny.tokenizer`).

The vision tower sees 64 x 64 pixels in 8 x 8-pixel patches: an 8 x 8 patch grid plus the class token,
enough for region-restricted pooling to differ from full-image pooling. The image processor resizes
the shortest edge to 64 and centre-crops 64 x 64, as CLIP's does at 224. Weights come from the
model's initializer under ``torch.manual_seed(seed)`` in a forked RNG; the same seed gives
byte-identical files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from spr.shared.tiny.tokenizer import CLIP_MAX_LENGTH, train_clip_tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """Sizes of the tiny CLIP (pixels for ``image_size`` / ``patch_size``)."""

    text_hidden_size: int = 64
    text_intermediate_size: int = 256
    text_num_hidden_layers: int = 2
    text_num_attention_heads: int = 2
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 256
    vision_num_hidden_layers: int = 2
    vision_num_attention_heads: int = 2
    image_size: int = 64
    patch_size: int = 8
    projection_dim: int = 64

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )


def build_clip(out_dir: Path, *, seed: int = 0, spec: ClipSpec | None = None) -> Path:
    """Write a random CLIPModel + CLIPProcessor into ``out_dir`` (created; must not exist yet).

    Returns ``out_dir``. Everything is built locally: no hub id is ever resolved.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    spec = spec or ClipSpec()
    tokenizer = train_clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": spec.text_hidden_size,
            "intermediate_size": spec.text_intermediate_size,
            "num_hidden_layers": spec.text_num_hidden_layers,
            "num_attention_heads": spec.text_num_attention_heads,
            "max_position_embeddings": CLIP_MAX_LENGTH,
            "projection_dim": spec.projection_dim,
            "hidden_act": "quick_gelu",
            # The text model pools at the first eos position, so these must be the tokenizer's ids.
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_hidden_layers": spec.vision_num_hidden_layers,
            "num_attention_heads": spec.vision_num_attention_heads,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
            "projection_dim": spec.projection_dim,
            "hidden_act": "quick_gelu",
        },
        projection_dim=spec.projection_dim,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).float().eval()  # type: ignore[no-untyped-call]

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)  # type: ignore[no-untyped-call]

    out_dir.mkdir(parents=True, exist_ok=False)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    logger.debug(
        "tiny CLIP (seed %d, %d parameters, vocab %d) written to %s",
        seed,
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        out_dir,
    )
    return out_dir
