"""The tiny offline models: they load through the Auto classes, run, and rebuild byte for byte."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from spr.shared.tiny import MARKER_FILE, TinyModelError, TinyModels, build_tiny_models
from spr.shared.tiny.tokenizer import QWEN2VL_SPECIAL_TOKENS
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    Qwen2Tokenizer,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)

GROUNDED = (
    "There is <|object_ref_start|>a red circle<|object_ref_end|>"
    "<|box_start|>(120,340),(260,512)<|box_end|> left of a blue square."
)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _image(seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (256, 256, 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy(), mode="RGB")


@pytest.fixture(scope="module")
def qwen(tiny_models: TinyModels) -> tuple[Qwen2VLProcessor, Qwen2VLForConditionalGeneration]:
    processor = AutoProcessor.from_pretrained(tiny_models.qwen2vl)
    model = AutoModelForImageTextToText.from_pretrained(tiny_models.qwen2vl).eval()
    return processor, model


def test_qwen2vl_loads_with_auto_classes_and_standard_config(
    qwen: tuple[Qwen2VLProcessor, Qwen2VLForConditionalGeneration],
) -> None:
    processor, model = qwen
    assert isinstance(processor, Qwen2VLProcessor)
    assert isinstance(processor.tokenizer, Qwen2Tokenizer)
    assert isinstance(model, Qwen2VLForConditionalGeneration)
    text, vision = model.config.text_config, model.config.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (128, 2, 4)
    assert text.num_key_value_heads == 2
    assert head_dim == 32  # vLLM's CPU attention needs head size >= 32
    assert vision.embed_dim // vision.num_heads >= 32
    assert (vision.depth, vision.embed_dim, vision.hidden_size) == (2, 64, text.hidden_size)
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert text.vocab_size == len(processor.tokenizer)
    tok = processor.tokenizer
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert model.config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    gen = model.generation_config
    assert gen.eos_token_id == [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    assert gen.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")


def test_grounding_special_tokens_are_single_ids(
    qwen: tuple[Qwen2VLProcessor, Qwen2VLForConditionalGeneration],
) -> None:
    tok = qwen[0].tokenizer
    ids = [tok.encode(t, add_special_tokens=False) for t in QWEN2VL_SPECIAL_TOKENS]
    assert all(len(i) == 1 for i in ids), ids
    first = ids[0][0]
    # Qwen2-VL's order, right after the BPE vocabulary, as in the released checkpoints.
    assert [i[0] for i in ids] == list(range(first, first + len(QWEN2VL_SPECIAL_TOKENS)))
    assert first + len(QWEN2VL_SPECIAL_TOKENS) == len(tok)
    encoded = tok.encode(GROUNDED, add_special_tokens=False)
    assert encoded.count(tok.convert_tokens_to_ids("<|box_start|>")) == 1
    assert tok.decode(encoded, skip_special_tokens=False) == GROUNDED
    # Digits are one token each, as with Qwen2's pre-tokenizer.
    assert tok.tokenize("(120,340)") == ["(", "1", "2", "0", ",", "3", "4", "0", ")"]
    odd = "ünïcødé 漢字 \t\n{}"
    assert tok.decode(tok.encode(odd, add_special_tokens=False)) == odd


def test_qwen2vl_chat_template_with_image_generates(
    qwen: tuple[Qwen2VLProcessor, Qwen2VLForConditionalGeneration],
) -> None:
    processor, model = qwen
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": _image()},
                {"type": "text", "text": "Describe the region [10, 20, 100, 200]."},
            ],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("Describe the region [10, 20, 100, 200].<|im_end|>\n<|im_start|>assistant\n")
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    # 256 x 256 is resized to 224 x 224: 16 x 16 patches of 14 px, merged 2 x 2 into 64 tokens.
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == 64

    prompt_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        greedy = [
            model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False) for _ in range(2)
        ]
        torch.manual_seed(0)
        sampled = model.generate(
            **inputs, max_new_tokens=8, min_new_tokens=8, do_sample=True, temperature=1.0, top_p=0.95
        )
    assert greedy[0].shape == (1, prompt_len + 8)
    assert torch.equal(greedy[0], greedy[1])
    assert sampled.shape == (1, prompt_len + 8)
    assert int(sampled[0, prompt_len:].max()) < len(processor.tokenizer)
    assert isinstance(processor.decode(sampled[0, prompt_len:], skip_special_tokens=False), str)


def test_clip_loads_and_embeds(tiny_models: TinyModels) -> None:
    model = CLIPModel.from_pretrained(tiny_models.clip).eval()
    processor = AutoProcessor.from_pretrained(tiny_models.clip)
    assert isinstance(processor, CLIPProcessor)
    assert isinstance(CLIPProcessor.from_pretrained(tiny_models.clip).tokenizer, CLIPTokenizer)
    assert model.config.text_config.max_position_embeddings == 77
    assert model.config.text_config.eos_token_id == processor.tokenizer.eos_token_id

    image = _image(1)
    with torch.no_grad():
        pixels = processor(images=[image, image.crop((0, 0, 100, 60))], return_tensors="pt")["pixel_values"]
        assert pixels.shape == (2, 3, 64, 64)
        vision = model.vision_model(pixel_values=pixels)
        assert vision.last_hidden_state.shape == (2, 1 + 8 * 8, 64)  # class token + 8 x 8 patches
        image_emb = model.get_image_features(pixel_values=pixels).pooler_output
        texts = processor(
            text=["a red circle left of a blue square", "A RED CIRCLE", "two " * 100],
            padding=True,
            truncation=True,
            return_tensors="pt",
        )
        assert texts["input_ids"].shape[1] == 77  # truncated to CLIP's context
        text_emb = model.get_text_features(**texts).pooler_output
    assert image_emb.shape == (2, 64)
    assert text_emb.shape == (3, 64)
    for emb in (image_emb, text_emb):
        norms = emb.norm(dim=-1)
        assert torch.isfinite(emb).all() and (norms > 0).all()
        assert torch.allclose((emb / norms[:, None]).norm(dim=-1), torch.ones(len(emb)))
    assert not torch.allclose(image_emb[0], image_emb[1])
    assert not torch.allclose(text_emb[0], text_emb[2])
    # The CLIP tokenizer lower-cases, as CLIP's does.
    assert texts["input_ids"][1].tolist()[:5] == processor.tokenizer("a red circle")["input_ids"]


def test_rebuild_keeps_complete_folders_and_refuses_other_seeds(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    before = _hashes(tiny_models.root)
    marker = tiny_models.qwen2vl / MARKER_FILE
    mtime = marker.stat().st_mtime_ns
    again = build_tiny_models(tiny_models.root, seed=0)
    assert again == tiny_models
    assert marker.stat().st_mtime_ns == mtime
    assert _hashes(tiny_models.root) == before
    with pytest.raises(TinyModelError, match=r"seed 0.*--overwrite"):
        build_tiny_models(tiny_models.root, seed=1)
    foreign = tmp_path / "qwen2vl"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a model")
    with pytest.raises(TinyModelError, match="not a complete tiny qwen2vl"):
        build_tiny_models(tmp_path)
    assert (foreign / "notes.txt").exists()
    with pytest.raises(TinyModelError, match="seed must be >= 0"):
        build_tiny_models(tmp_path / "other", seed=-1)


def test_cli_rebuild_in_another_process_is_byte_identical(tiny_models: TinyModels, tmp_path: Path) -> None:
    out = tmp_path / "models"
    done = subprocess.run(
        [sys.executable, "-m", "spr.cli.main", "models", "tiny", "--out", str(out), "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / "qwen2vl"), str(out / "clip")]
    assert _hashes(out) == _hashes(tiny_models.root)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_other_seed_changes_weights_not_tokenizers(tiny_models: TinyModels, tmp_path: Path) -> None:
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "junk").write_text("replaced by --overwrite")
    other = build_tiny_models(tmp_path, seed=1, overwrite=True)
    for kind in ("qwen2vl", "clip"):
        ours, theirs = _hashes(getattr(tiny_models, kind)), _hashes(getattr(other, kind))
        assert ours.keys() == theirs.keys()
        assert ours["model.safetensors"] != theirs["model.safetensors"]
        assert ours["tokenizer.json"] == theirs["tokenizer.json"]


def test_models_command_module_imports_nothing_heavy() -> None:
    heavy = "{'torch', 'transformers', 'tokenizers'}"
    code = f"import sys, spr.cli.models; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def number_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return build_tiny_models(tmp_path_factory.mktemp("number-tokens"), seed=0, number_tokens=1000)


def test_number_tokens_round_trip_and_the_format_is_unchanged(number_models: TinyModels) -> None:
    tok = AutoProcessor.from_pretrained(number_models.qwen2vl).tokenizer
    text = "[123, 45, 6, 999]"
    ids = tok.encode(text, add_special_tokens=False)
    numbers = [t for t in tok.convert_ids_to_tokens(ids) if t.isdigit()]
    assert numbers == ["123", "45", "6", "999"]  # four number tokens, not ten digits
    assert tok.decode(ids) == text  # byte-identical
    box = "<|box_start|>(0,17),(1000,999)<|box_end|>"
    ids = tok.encode(box, add_special_tokens=False)
    assert len(ids) == 11 and tok.decode(ids, skip_special_tokens=False) == box
    # Larger integers still encode (two number tokens), and odd text is untouched.
    for odd in ("12345 x0 at 05", "ünïcødé 漢字 \t\n{}", GROUNDED):
        assert tok.decode(tok.encode(odd, add_special_tokens=False), skip_special_tokens=False) == odd


def test_number_token_rows_start_from_a_sincos_code_of_the_value(number_models: TinyModels) -> None:
    processor = AutoProcessor.from_pretrained(number_models.qwen2vl)
    model = AutoModelForImageTextToText.from_pretrained(number_models.qwen2vl)
    tok = processor.tokenizer
    assert model.config.text_config.vocab_size == len(tok)  # vLLM needs vocab size == tokenizer length
    ids = tok.convert_tokens_to_ids(["500", "501", "900", "0"])
    for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        rows = torch.nn.functional.normalize(weight[ids].detach(), dim=1)
        near, far = float(rows[0] @ rows[1]), float(rows[0] @ rows[2])
        assert near > 0.8 > far  # neighbouring values start out alike, distant ones not
        # Scaled like the random rows, so they neither dominate nor vanish.
        ratio = float(weight[ids].detach().std() / weight[:100].detach().std())
        assert 0.5 < ratio < 2.0


def test_number_token_build_is_recorded_and_a_digit_build_is_not_reused(
    number_models: TinyModels, tiny_models: TinyModels, tmp_path: Path
) -> None:
    marker = json.loads((number_models.qwen2vl / MARKER_FILE).read_text())
    assert marker["number_tokens"] == 1000
    again = build_tiny_models(number_models.root, seed=0, number_tokens=1000)  # complete: kept
    assert again.qwen2vl == number_models.qwen2vl
    with pytest.raises(TinyModelError, match="number tokens"):
        build_tiny_models(number_models.root, seed=0)
