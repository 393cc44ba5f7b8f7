"""A tiny random Qwen3-VL checkpoint, built offline, of the production architecture.

Like :mod:`spr.shared.tiny.qwen2vl`, :func:`build_qwen3vl` writes an ordinary Hugging Face folder
(``config.json`` with ``model_type`` ``qwen3_vl``, weights, the trained Qwen2 tokenizer with the Qwen
special tokens, the image/video processor configs and ``chat_template.jinja``) that loads with
``AutoProcessor`` and ``AutoModelForImageTextToText``, so the generator, the scorer's format detection
and ``spr eval`` meet the Qwen3-VL code paths (and the ``qwen3vl`` box format) as with a released
Qwen3-VL-2B/4B/8B-Instruct folder.

What differs from the tiny Qwen2-VL, as in the released models: the vision tower cuts 16-pixel patches
(a resized side is a multiple of 16 x 2 = 32), has learned position embeddings and feeds "deepstack"
features of some of its layers into the first language-model layers; the text model is Qwen3's
(q/k norms, explicit head_dim) with interleaved multimodal rotary sections; images are normalised with
mean and std 0.5; the chat template is Qwen3-VL's own (no default system message; copied from TRL's
package data, which ships it unchanged).

Sizes follow the tiny Qwen2-VL so that vLLM's CPU backend can serve it: attention heads of 32 (text
128 / 4 heads, 2 KV heads; vision 64 / 2 heads), ``mrope_section`` ``[6, 5, 5]`` summing to head_dim / 2
(Qwen3-VL's ``[24, 20, 20]`` scaled to head_dim 32), ``max_position_embeddings`` 4096. The weights come
from the model's own initializer under ``torch.manual_seed(seed)`` in a forked RNG, in float32; the
same seed gives byte-identical files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from spr.shared.tiny.tokenizer import (
    QWEN2VL_EOS_TOKEN,
    QWEN2VL_PAD_TOKEN,
    special_token_id,
    train_qwen2_tokenizer,
)

logger = logging.getLogger(__name__)

CHAT_TEMPLATE_RESOURCE: Final = "qwen3vl_chat_template.jinja"


@dataclass(frozen=True)
class Qwen3VLSpec:
    """Sizes of the tiny Qwen3-VL (the test model's defaults).

    Pixel bounds are the image processor's ``shortest_edge`` / ``longest_edge`` (pixels of the resized
    image, whose sides are multiples of ``patch_size * spatial_merge_size`` = 32). With the defaults a
    256 x 256 image keeps its size: 16 x 16 patches, 64 image tokens.
    """

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    mrope_section: tuple[int, int, int] = (6, 5, 5)
    rope_theta: float = 5_000_000.0
    max_position_embeddings: int = 4096
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vision_intermediate_size: int = 128
    vision_num_heads: int = 2
    vision_position_embeddings: int = 256  # a 16 x 16 table, interpolated to each image's patch grid
    deepstack_visual_indexes: tuple[int, ...] = (0,)
    patch_size: int = 16
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 64 * 64
    max_pixels: int = 256 * 256

    def __post_init__(self) -> None:
        head_dim, rem = divmod(self.hidden_size, self.num_attention_heads)
        if rem or head_dim % 2:
            raise ValueError(f"hidden_size {self.hidden_size} must split into num_attention_heads even heads")
        if sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.vision_hidden_size % self.vision_num_heads:
            raise ValueError("vision_hidden_size must be a multiple of vision_num_heads")
        if not all(0 <= i < self.vision_depth for i in self.deepstack_visual_indexes):
            raise ValueError(f"deepstack_visual_indexes must be vision layers 0..{self.vision_depth - 1}")
        if len(self.deepstack_visual_indexes) > self.num_hidden_layers:
            raise ValueError("each deepstack feature goes into its own language-model layer: too many")


def chat_template() -> str:
    """Qwen3-VL's chat template (Jinja source), as shipped with the released Instruct checkpoints."""
    return resources.files(__package__).joinpath(CHAT_TEMPLATE_RESOURCE).read_text(encoding="utf-8")


def build_qwen3vl(out_dir: Path, *, seed: int = 0, spec: Qwen3VLSpec | None = None) -> Path:
    """Write a random Qwen3-VL checkpoint + processor into ``out_dir`` (created; must not exist).

    Returns ``out_dir``. Everything is built locally: no hub id is ever resolved.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    spec = spec or Qwen3VLSpec()
    tokenizer = train_qwen2_tokenizer()
    template = chat_template()
    tokenizer.chat_template = template
    ids = {tok: special_token_id(tokenizer, tok) for tok in tokenizer.all_special_tokens}
    pad_id, eos_id = ids[QWEN2VL_PAD_TOKEN], ids[QWEN2VL_EOS_TOKEN]

    config = Qwen3VLConfig(
        text_config=_text_config(spec, vocab_size=len(tokenizer), pad_id=pad_id, eos_id=eos_id),
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_heads": spec.vision_num_heads,
            "out_hidden_size": spec.hidden_size,  # the merger projects vision tokens into the text width
            "num_position_embeddings": spec.vision_position_embeddings,
            "deepstack_visual_indexes": list(spec.deepstack_visual_indexes),
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.spatial_merge_size,
            "temporal_patch_size": spec.temporal_patch_size,
            "in_channels": 3,
            "hidden_act": "gelu_pytorch_tanh",
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config).float().eval()  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=pad_id,
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
    )

    common: dict[str, Any] = {
        "size": {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels},
        "patch_size": spec.patch_size,
        "temporal_patch_size": spec.temporal_patch_size,
        "merge_size": spec.spatial_merge_size,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    processor = Qwen3VLProcessor(  # type: ignore[no-untyped-call]
        image_processor=Qwen2VLImageProcessor(**common),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**common),
        chat_template=template,
    )

    out_dir.mkdir(parents=True, exist_ok=False)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    logger.debug(
        "tiny Qwen3-VL (seed %d, %d parameters, vocab %d) written to %s",
        seed,
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        out_dir,
    )
    return out_dir


def _text_config(spec: Qwen3VLSpec, *, vocab_size: int, pad_id: int, eos_id: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.hidden_size // spec.num_attention_heads,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {
            "rope_type": "default",
            "mrope_section": list(spec.mrope_section),
            "mrope_interleaved": True,
            "rope_theta": spec.rope_theta,
        },
        "bos_token_id": pad_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "tie_word_embeddings": False,
    }
