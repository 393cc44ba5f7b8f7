"""The tiny offline Qwen3-VL: a standard Qwen3-VL folder that loads, chats with an image, generates,
is recognised as the qwen3vl box format, and rebuilds byte for byte from `spr models tiny --qwen3vl`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from spr.shared.formats import FAMILY_FORMATS
from spr.shared.tiny import MARKER_FILE
from spr.shared.tiny.tokenizer import QWEN2VL_SPECIAL_TOKENS
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER_FILE
    }


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3vl: Path) -> tuple[Qwen3VLProcessor, Qwen3VLForConditionalGeneration]:
    processor = AutoProcessor.from_pretrained(tiny_qwen3vl)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen3vl).eval()
    return processor, model


def test_loads_with_auto_classes_as_the_qwen3vl_format(
    tiny_qwen3vl: Path, qwen3: tuple[Qwen3VLProcessor, Qwen3VLForConditionalGeneration]
) -> None:
    processor, model = qwen3
    assert isinstance(processor, Qwen3VLProcessor)
    assert isinstance(model, Qwen3VLForConditionalGeneration)
    config = json.loads((tiny_qwen3vl / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    assert FAMILY_FORMATS[config["model_type"]] == "qwen3vl"
    assert config["vision_config"]["patch_size"] == 16
    assert config["text_config"]["rope_parameters"]["mrope_interleaved"] is True
    tokenizer = processor.tokenizer
    for token in QWEN2VL_SPECIAL_TOKENS:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert config["text_config"]["vocab_size"] == len(tokenizer)


def test_chat_template_with_an_image_generates(
    qwen3: tuple[Qwen3VLProcessor, Qwen3VLForConditionalGeneration],
) -> None:
    processor, model = qwen3
    image = Image.new("RGB", (256, 256), (200, 30, 30))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": image},
                {"type": "text", "text": "Describe the region [39, 78, 390, 781]."},
            ],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # Qwen3-VL's template adds no default system message.
    assert prompt == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the region "
        "[39, 78, 390, 781].<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    # 256 x 256 stays 256 x 256 (multiples of 32): 16 x 16 patches of 16 px, merged 2 x 2 into 64 tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == 64
    prompt_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        greedy = [
            model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False) for _ in range(2)
        ]
    assert greedy[0].shape == (1, prompt_len + 6)
    assert torch.equal(greedy[0], greedy[1])
    assert isinstance(processor.decode(greedy[0][0, prompt_len:], skip_special_tokens=False), str)


def test_cli_builds_it_on_request_byte_identical(tiny_qwen3vl: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    done = subprocess.run(
        [sys.executable, "-m", "spr.cli.main", "models", "tiny", "--out", str(out), "--qwen3vl"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / "qwen2vl"), str(out / "clip"), str(out / "qwen3vl")]
    assert (out / "qwen3vl" / MARKER_FILE).is_file()
    assert _hashes(out / "qwen3vl") == _hashes(tiny_qwen3vl)
