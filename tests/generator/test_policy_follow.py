"""Generators follow spr:policy: a newer announced adapter is loaded between tasks and recorded on groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spr.generator.factory import build_generator
from spr.generator.policy_follow import PolicyFollower
from spr.generator.settings import GeneratorSettings
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.policy import PolicyBoard, publish_adapter
from spr.shared.regions import build_regions


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_adapter(model_dir: Path, out: Path) -> Path:
    """A real peft LoRA adapter for the tiny Qwen2-VL, with non-zero B so that merging changes weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(str(out))
    return out


def test_follower_loads_announced_policy_and_groups_record_it(
    tmp_path: Path, tiny_models: Any, redis_url: str
) -> None:
    root = tmp_path / "data"
    annotations = write_synthetic_dataset(root, images=1, seed=1, min_objects=5, max_objects=6)
    ref, objects = next(iter(load_coco(annotations)))
    (task,) = build_regions(ref, objects, seed=0, source="synthetic")
    settings = GeneratorSettings(
        redis_url=redis_url,
        data_root=root,
        generator_model=Path(tiny_models.qwen2vl),
        generator_samples_per_prompt=1,
        generator_max_new_tokens=8,
        generator_torch_threads=1,
    )
    generator = build_generator(settings)
    board = PolicyBoard.from_url(redis_url)
    follower = PolicyFollower(board, generator)
    assert not follower.refresh()  # nothing announced: the base model, round 0
    (base_group,) = generator.generate([task])
    assert base_group.policy is not None and base_group.policy.key == "r0-base"

    trained = make_adapter(Path(tiny_models.qwen2vl), tmp_path / "trained")
    version = publish_adapter(trained, tmp_path / "policies", round_=1, model_id=generator.model_id)
    board.announce(version)
    before = {n: p.detach().clone() for n, p in generator.engine.model.named_parameters() if "q_proj" in n}  # type: ignore[attr-defined]
    assert follower.refresh() and not follower.refresh()  # loaded once
    after = dict(generator.engine.model.named_parameters())  # type: ignore[attr-defined]
    assert any(not (before[n] == after[n]).all() for n in before)  # the merged adapter moved the weights
    (group,) = generator.generate([task])
    assert group.policy == version
    board.close()
    # A generator given the published folder as its fixed adapter records the same version.
    pinned = build_generator(
        settings.model_copy(update={"generator_adapter": Path(version.adapter_dir or "")})
    )
    assert pinned.policy == version
