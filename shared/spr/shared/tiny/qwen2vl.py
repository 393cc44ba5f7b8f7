"""A tiny random Qwen2-VL checkpoint, built offline, of the production architecture.

The folder :func:`build_qwen2vl` writes is an ordinary Hugging Face checkpoint: ``config.json``,
``generation_config.json``, ``model.safetensors``, the tokenizer files, the image/video processor
configs and ``chat_template.jinja``. It loads with ``AutoProcessor.from_pretrained(dir)`` and
``AutoModelForImageTextToText.from_pretrained(dir)`` (or ``Qwen2VLForConditionalGeneration``), so
tests and the demo run the same code paths as a real Qwen2-VL-2B/7B-Instruct folder.

Notes for serving it with vLLM (the generator's vLLM backend; ``scripts/setup_vllm_env.sh`` builds the
CPU environment it was served from):

* vLLM's CPU attention backend needs an attention head size of at least 32: the text model uses
  hidden 128 / 4 heads (head_dim 32, 2 KV heads) and the vision tower 64 / 2 heads (head_dim 32).
* vLLM must be able to load the folder as ``Qwen2VLForConditionalGeneration``: only standard config
  fields are set, ``vocab_size`` equals the tokenizer's length, and ``mrope_section`` sums to
  head_dim / 2 (``[4, 6, 6]``, Qwen's ``[16, 24, 24]`` scaled to head_dim 32).
* ``max_position_embeddings`` is 4096 rather than 32768, which keeps vLLM's default ``max_model_len``
  and its profiling run small.

The weights come from the model's own initializer under ``torch.manual_seed(seed)`` (inside a forked
RNG, so the caller's random state is untouched), in float32; the same seed gives byte-identical files.
The chat template is Qwen2-VL's own (byte-identical to Qwen2.5-VL's; copied from TRL's package data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from spr.shared.tiny.numbers import add_number_tokens, init_number_rows
from spr.shared.tiny.tokenizer import (
    QWEN2VL_EOS_TOKEN,
    QWEN2VL_PAD_TOKEN,
    special_token_id,
    train_qwen2_tokenizer,
)

logger = logging.getLogger(__name__)

CHAT_TEMPLATE_RESOURCE: Final = "qwen2vl_chat_template.jinja"


@dataclass(frozen=True)
class Qwen2VLSpec:
    """Sizes of the tiny Qwen2-VL. The defaults are the test/demo model; variants are for experiments.

    Pixel bounds are the image processor's ``min_pixels`` / ``max_pixels`` (pixels of the resized
    image, which is a multiple of ``patch_size * spatial_merge_size`` = 28 on each side). With the
    defaults a 256 x 256 image is resized to 224 x 224: 16 x 16 patches, 64 image tokens.
    """

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 4096
    vision_depth: int = 2
    vision_embed_dim: int = 64
    vision_num_heads: int = 2
    vision_mlp_ratio: int = 4
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 224 * 224
    number_tokens: int | None = None

    def __post_init__(self) -> None:
        head_dim, rem = divmod(self.hidden_size, self.num_attention_heads)
        if rem or head_dim % 2:
            raise ValueError(f"hidden_size {self.hidden_size} must split into num_attention_heads even heads")
        if sum(self.mrope_section) * 2 != head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.vision_embed_dim % self.vision_num_heads:
            raise ValueError("vision_embed_dim must be a multiple of vision_num_heads")
        if self.number_tokens is not None and not 0 <= self.number_tokens <= 100_000:
            raise ValueError(f"number_tokens must be in 0..100000 or None, got {self.number_tokens}")


def chat_template() -> str:
    """Qwen2-VL's chat template (Jinja source), as shipped with the released checkpoints."""
    return resources.files(__package__).joinpath(CHAT_TEMPLATE_RESOURCE).read_text(encoding="utf-8")


def build_qwen2vl(out_dir: Path, *, seed: int = 0, spec: Qwen2VLSpec | None = None) -> Path:
    """Write a random Qwen2-VL checkpoint + processor into ``out_dir`` (created; must not hold one).

    Returns ``out_dir``. Everything is built locally: no hub id is ever resolved.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    spec = spec or Qwen2VLSpec()
    tokenizer = train_qwen2_tokenizer()
    number_ids = [] if spec.number_tokens is None else add_number_tokens(tokenizer, spec.number_tokens)
    template = chat_template()
    tokenizer.chat_template = template
    ids = {tok: special_token_id(tokenizer, tok) for tok in tokenizer.all_special_tokens}
    pad_id, eos_id = ids[QWEN2VL_PAD_TOKEN], ids[QWEN2VL_EOS_TOKEN]

    config = Qwen2VLConfig(
        text_config=_text_config(spec, vocab_size=len(tokenizer), pad_id=pad_id, eos_id=eos_id),
        vision_config={
            "depth": spec.vision_depth,
            "embed_dim": spec.vision_embed_dim,
            "hidden_size": spec.hidden_size,  # the merger projects vision tokens into the text width
            "num_heads": spec.vision_num_heads,
            "mlp_ratio": spec.vision_mlp_ratio,
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.spatial_merge_size,
            "temporal_patch_size": spec.temporal_patch_size,
            "in_channels": 3,
            "hidden_act": "quick_gelu",
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
        model = Qwen2VLForConditionalGeneration(config).float().eval()  # type: ignore[no-untyped-call]
        if number_ids:
            init_number_rows(model, number_ids)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=pad_id,
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
    )

    pixels = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    common: dict[str, Any] = {
        "size": pixels,
        "patch_size": spec.patch_size,
        "temporal_patch_size": spec.temporal_patch_size,
        "merge_size": spec.spatial_merge_size,
    }
    processor = Qwen2VLProcessor(  # type: ignore[no-untyped-call]
        image_processor=Qwen2VLImageProcessor(**common),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**common),
        chat_template=template,
    )

    out_dir.mkdir(parents=True, exist_ok=False)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    logger.debug(
        "tiny Qwen2-VL (seed %d, %d parameters, vocab %d) written to %s",
        seed,
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        out_dir,
    )
    return out_dir


def _text_config(spec: Qwen2VLSpec, *, vocab_size: int, pad_id: int, eos_id: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": spec.max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "max_window_layers": spec.num_hidden_layers,
        "rope_parameters": {
            "rope_type": "default",
            "mrope_section": list(spec.mrope_section),
            "rope_theta": spec.rope_theta,
        },
        "bos_token_id": pad_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }
