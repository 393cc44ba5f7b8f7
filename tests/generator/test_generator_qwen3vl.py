"""The generator on the tiny Qwen3-VL (transformers engine): the qwen3vl format comes from the model
folder, prompts quote the region on Qwen3-VL's 0-1000 grid, and answers need no resized size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from spr.generator.engines.transformers_engine import TransformersEngine
from spr.generator.factory import build_generator
from spr.generator.settings import GeneratorSettings
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.formats import render_box
from spr.shared.formats.reader import ResizeRule
from spr.shared.regions import build_regions
from spr.shared.schemas import RegionTask, Size


@pytest.fixture(scope="module")
def engine(tiny_qwen3vl: Path) -> Iterator[TransformersEngine]:
    threads = torch.get_num_threads()
    yield TransformersEngine(tiny_qwen3vl, torch_threads=1)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RegionTask]]:
    root = tmp_path_factory.mktemp("synthetic")
    annotations = write_synthetic_dataset(root, images=1, seed=3)
    tasks = [
        t for ref, objs in load_coco(annotations) for t in build_regions(ref, objs, seed=0, source="syn")
    ]
    assert tasks, "the synthetic dataset gave no region task"
    return root, tasks


def test_qwen3vl_groups_need_no_resized_size(
    tiny_qwen3vl: Path, engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    root, tasks = dataset
    settings = GeneratorSettings(
        data_root=root,
        generator_model=tiny_qwen3vl,  # the format comes from its config.json (model_type qwen3_vl)
        generator_samples_per_prompt=1,
        generator_max_new_tokens=4,
    )
    generator = build_generator(settings, engine=engine)
    assert generator.format == "qwen3vl"
    task = tasks[0]
    (group,) = generator.generate([task])
    assert (group.format, group.resized_size) == ("qwen3vl", None)
    assert len(group.candidates) == 3
    size = Size(width=task.image.width, height=task.image.height)
    region = render_box(task.region, "qwen3vl", image_size=size)
    assert region in group.canonical_prompt  # [x1, y1, x2, y2] in thousandths of the image
    prompt = generator.prepare(task).prompts[0]
    phrases, problems = generator.parse(
        '[{"bbox_2d": [0, 0, 500, 1000], "label": "left half"}]', task, prompt, None
    )
    assert problems == []
    assert phrases[0].boxes == [pytest.approx((0.0, 0.0, size.width / 2, float(size.height)))]
    # The model saw the image resized by Qwen3-VL's own rule (16 px patches, merged 2 x 2).
    rule = ResizeRule.from_image_processor(engine.processor.image_processor)
    inputs = engine.prepare(generator.prepare(task).requests[0])
    resized = rule.resized(size.width, size.height)
    assert rule.patch_size * rule.merge_size == 32
    assert inputs["image_grid_thw"][0].tolist() == [1, resized.height // 16, resized.width // 16]
