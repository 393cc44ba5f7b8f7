"""The generator with the tiny offline Qwen2-VL and the transformers engine: prompts reach the model
with the right images, k samples per prompt carry distinct reproducible seeds, and parsing maps
crop-relative boxes back to the original image."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from spr.generator.engines.protocol import GenerationRequest, Sample
from spr.generator.engines.transformers_engine import TransformersEngine
from spr.generator.generation import CandidateGenerator, SamplingConfig, TaskError
from spr.generator.prompts import PromptSet, PromptTemplate
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.formats import render_box
from spr.shared.formats.reader import ResizeRule
from spr.shared.regions import build_regions
from spr.shared.schemas import RegionTask, Size


@pytest.fixture(scope="module")
def engine(tiny_models: Any) -> Iterator[TransformersEngine]:
    threads = torch.get_num_threads()
    # one intra-op thread: on a shared 2-core machine the tiny model runs ~30x faster than with two
    yield TransformersEngine(tiny_models.qwen2vl, torch_threads=1)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RegionTask]]:
    root = tmp_path_factory.mktemp("synthetic")
    annotations = write_synthetic_dataset(root, images=2, seed=3)
    tasks = [
        t for ref, objs in load_coco(annotations) for t in build_regions(ref, objs, seed=0, source="syn")
    ]
    assert tasks, "the synthetic dataset gave no region task"
    return root, tasks


def _generator(
    engine: TransformersEngine, root: Path, *, k: int = 2, tokens: int = 8, **kwargs: Any
) -> CandidateGenerator:
    sampling = SamplingConfig(samples_per_prompt=k, max_new_tokens=tokens, temperature=1.0, top_p=0.95)
    prompts = kwargs.pop("prompts", PromptSet.load())
    fmt = kwargs.pop("fmt", "qwen2vl")
    return CandidateGenerator(engine, prompts, fmt, sampling, data_root=root, **kwargs)


def test_three_prompt_types_reach_the_model_with_the_right_images(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    root, tasks = dataset
    task = tasks[0]
    prepared = _generator(engine, root).prepare(task)
    rule = ResizeRule.from_image_processor(engine.processor.image_processor)
    image_token = engine.model.config.image_token_id
    merge = rule.merge_size

    by_type = {p.record.type: (p, r) for p, r in zip(prepared.prompts, prepared.requests, strict=True)}
    assert set(by_type) == {"box", "box_crop", "box_hints"}
    for prompt_type, (prompt, request) in by_type.items():
        inputs = engine.prepare(request)
        grids = inputs["image_grid_thw"]
        expected_images = 2 if prompt_type == "box_crop" else 1
        assert grids.shape[0] == expected_images == prompt.record.images == len(request.images)
        # every image's patches are announced by image tokens in the text the model reads
        n_tokens = int((inputs["input_ids"] == image_token).sum())
        assert n_tokens == int(grids.prod(dim=1).sum()) // merge**2
        # first image: the full original image, resized by the processor's own rule
        full = rule.resized(task.image.width, task.image.height)
        assert grids[0].tolist() == [1, full.height // rule.patch_size, full.width // rule.patch_size]
        assert request.images[0].size == (task.image.width, task.image.height)
        assert prompt.record.text in engine.processor.tokenizer.decode(inputs["input_ids"][0])

    prompt, request = by_type["box_crop"]
    assert prompt.crop is not None
    x1, y1, x2, y2 = prompt.crop
    crop_image = request.images[1]
    assert crop_image.size == (x2 - x1, y2 - y1)
    rx1, ry1, rx2, ry2 = task.region
    assert x1 <= rx1 < x1 + 1 and y1 <= ry1 < y1 + 1 and x2 - 1 < rx2 <= x2 and y2 - 1 < ry2 <= y2
    # the second image's pixels are the crop's, exactly as the processor prepares the crop alone
    alone = engine.processor.image_processor(images=[crop_image], return_tensors="pt")
    both = engine.prepare(request)
    first_patches = int(both["image_grid_thw"][0].prod())
    assert torch.equal(both["pixel_values"][first_patches:], alone["pixel_values"])
    assert both["image_grid_thw"][1].tolist() == alone["image_grid_thw"][0].tolist()

    hints = by_type["box_hints"][0].record.text
    assert all(obj.label in hints for obj in task.objects)


def test_k_samples_per_prompt_have_distinct_reproducible_seeds(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    root, tasks = dataset
    generator = _generator(engine, root, k=3)
    (group,) = generator.generate([tasks[0]])

    assert group.group_id == f"g-{tasks[0].task_id}"
    assert group.canonical_prompt == group.prompts[0].text and group.prompts[0].type == "box"
    assert len(group.candidates) == 3 * 3
    for prompt in group.prompts:
        mine = [c for c in group.candidates if c.prompt_id == prompt.prompt_id]
        assert [c.sample_index for c in mine] == [0, 1, 2]
        assert {c.prompt_type for c in mine} == {prompt.type}
        assert len({c.seed for c in mine}) == 3
        assert [c.seed - mine[0].seed for c in mine] == [0, 1, 2]  # sample i: prompt seed + i
        assert all(0 < c.tokens <= 8 for c in mine)
    assert len({c.seed for c in group.candidates}) == 9
    assert len({c.text for c in group.candidates}) > 1

    # one sample re-drawn alone (n = 1) with its recorded seed gives the same text
    prepared = generator.prepare(tasks[0])
    request = prepared.requests[1]
    third = next(
        c
        for c in group.candidates
        if c.prompt_id == prepared.prompts[1].record.prompt_id and c.sample_index == 2
    )
    alone = GenerationRequest(
        messages=request.messages, n=1, seed=third.seed, temperature=1.0, top_p=0.95, max_new_tokens=8
    )
    assert engine.generate([alone])[0][0].text == third.text

    # the whole group is reproducible from the settings' seed
    (again,) = generator.generate([tasks[0]])
    assert [c.text for c in again.candidates] == [c.text for c in group.candidates]


def _two_image_request(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]], **changes: Any
) -> GenerationRequest:
    """The task's box_crop request (two images, so every batched row carries both), with ``changes``."""
    root, tasks = dataset
    requests = _generator(engine, root).prepare(tasks[0]).requests
    request = next(r for r in requests if len(r.images) == 2)
    return replace(request, **changes)


def _eos_ids(engine: TransformersEngine) -> set[int]:
    eos = engine.model.generation_config.eos_token_id
    return {eos} if isinstance(eos, int) else set(eos)


def _up_to_eos(engine: TransformersEngine, new_ids: list[int]) -> tuple[int, ...]:
    """Generated ids up to and including the first end-of-sequence token (what follows is padding)."""
    eos = _eos_ids(engine)
    end = next((i for i, token in enumerate(new_ids) if token in eos), None)
    return tuple(new_ids if end is None else new_ids[: end + 1])


def _assert_well_formed(engine: TransformersEngine, sample: Sample, max_new_tokens: int) -> None:
    eos = _eos_ids(engine)
    ids = sample.token_ids
    assert sample.tokens == len(ids) > 0
    assert not eos & set(ids[:-1])  # nothing kept after an end-of-sequence token
    if sample.finish_reason == "stop":
        assert ids[-1] in eos and sample.text == engine.processor.tokenizer.decode(list(ids[:-1]))
    else:
        assert sample.finish_reason == "length" and len(ids) == max_new_tokens and ids[-1] not in eos
        assert sample.text == engine.processor.tokenizer.decode(list(ids))


def _sampled_alone(engine: TransformersEngine, request: GenerationRequest, index: int) -> tuple[int, ...]:
    """Sample ``index`` drawn the way the engine used to draw it: alone, by transformers' own sampling,
    under ``torch.manual_seed(seed + index)``."""
    inputs = engine.prepare(request)
    torch.manual_seed(request.sample_seed(index))
    with torch.inference_mode():
        output = engine.model.generate(
            **inputs,
            do_sample=True,
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            repetition_penalty=request.repetition_penalty,
            max_new_tokens=request.max_new_tokens,
        )
    return _up_to_eos(engine, output[0, inputs["input_ids"].shape[1] :].tolist())


def test_batched_samples_are_reproducible_and_ignore_the_global_rng(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    request = _two_image_request(engine, dataset, n=4, seed=11, max_new_tokens=12)
    torch.manual_seed(0)
    first = engine.generate([request])[0]
    torch.manual_seed(12345)  # each row draws with its own generator, never torch's global one
    again = engine.generate([request])[0]
    assert again == first
    assert [s.seed for s in first] == [11, 12, 13, 14]
    assert len({s.token_ids for s in first}) == 4  # four generators, four different samples
    for sample in first:
        _assert_well_formed(engine, sample, 12)


def test_sample_i_depends_only_on_its_seed(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    # Exact equality across batch sizes holds because CPU kernels here give every row the same
    # logits whatever the batch size (rows share the prompt, so there is no padding). A backend whose
    # matmuls round differently at another batch size could move a near-tied draw; then only the
    # reproducibility test above would hold exactly.
    request = _two_image_request(engine, dataset, seed=5, max_new_tokens=12)
    four = engine.generate([replace(request, n=4)])[0]
    two = engine.generate([replace(request, n=2)])[0]
    assert two == four[:2]
    alone = engine.generate([replace(request, n=1, seed=request.sample_seed(3))])[0]
    assert alone == four[3:]


def _assert_rows_as_drawn_alone(engine: TransformersEngine, request: GenerationRequest) -> list[Sample]:
    """``request``'s samples, each checked equal to the sample drawn alone by transformers' own
    sampling: ``generate(do_sample=True)`` under ``torch.manual_seed(seed)`` draws from a row's
    probabilities with ``torch.multinomial`` exactly as the engine's per-row generator does, so on CPU
    (batch-invariant kernels) the batched rows must match token for token."""
    samples = engine.generate([request])[0]
    for index, sample in enumerate(samples):
        _assert_well_formed(engine, sample, request.max_new_tokens)
        assert sample.token_ids == _sampled_alone(engine, request, index), (request.seed, index)
    return samples


def test_batched_rows_sample_as_transformers_does_alone(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    # temperature, top-k, top-p and the repetition penalty, applied as transformers applies them
    request = _two_image_request(
        engine,
        dataset,
        n=4,
        seed=3,
        temperature=0.7,
        top_p=0.9,
        top_k=50,
        repetition_penalty=1.3,
        max_new_tokens=16,
    )
    _assert_rows_as_drawn_alone(engine, request)


def test_rows_that_stop_early_change_nothing_for_the_others(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    # the tiny model rarely draws its end-of-sequence tokens: look for a request of 8 samples where
    # some rows stop (and are padded from then on) while others run to the length limit
    for seed in range(0, 64, 8):
        request = _two_image_request(engine, dataset, n=8, seed=seed, max_new_tokens=32)
        samples = _assert_rows_as_drawn_alone(engine, request)
        if {s.finish_reason for s in samples} == {"stop", "length"}:
            break
    else:
        pytest.fail("no request of 8 samples mixed early stops with full-length ones")


def test_greedy_is_one_plain_generate(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    request = _two_image_request(engine, dataset, n=3, seed=7, temperature=0.0, max_new_tokens=12)
    samples = engine.generate([request])[0]
    inputs = engine.prepare(request)
    with torch.inference_mode():
        output = engine.model.generate(
            **inputs, do_sample=False, temperature=None, top_p=None, top_k=None, max_new_tokens=12
        )
    expected = _up_to_eos(engine, output[0, inputs["input_ids"].shape[1] :].tolist())
    assert [s.seed for s in samples] == [7, 8, 9]
    assert all(s.token_ids == expected for s in samples)
    assert [replace(s, seed=0) for s in samples] == [replace(samples[0], seed=0)] * 3
    _assert_well_formed(engine, samples[0], 12)


def test_crop_relative_boxes_are_mapped_back_to_the_original_image(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    root, tasks = dataset
    template = PromptTemplate(
        id="crop-rel", type="box_crop", coords="crop", text="{region}: boxes in image 2"
    )
    generator = _generator(
        engine, root, prompts=PromptSet([PromptTemplate(id="a", type="box", text="{region}"), template])
    )
    task = tasks[0]
    prompt = generator.prepare(task).prompts[1]
    assert prompt.crop is not None
    left, top, right, bottom = prompt.crop
    # qwen2vl: 0-1000 relative to the image the model means, here the crop
    text = "<|object_ref_start|>a shape<|object_ref_end|><|box_start|>(100,250),(500,1000)<|box_end|>"
    phrases, problems = generator.parse(text, task, prompt, None)
    assert problems == []
    (phrase,) = phrases
    w, h = right - left, bottom - top
    expected = (left + 0.1 * w, top + 0.25 * h, left + 0.5 * w, top + 1.0 * h)
    assert phrase.boxes[0] == pytest.approx(expected, abs=1e-6)
    # the same text under an image-relative prompt is read against the full image
    phrases, _ = generator.parse(text, task, generator.prepare(task).prompts[0], None)
    W, H = task.image.width, task.image.height  # noqa: N806
    assert phrases[0].boxes[0] == pytest.approx((0.1 * W, 0.25 * H, 0.5 * W, 1.0 * H), abs=1e-6)


def test_qwen25vl_records_the_processor_resized_size(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    root, tasks = dataset
    rule = ResizeRule.from_image_processor(engine.processor.image_processor)
    generator = _generator(engine, root, k=1, tokens=4, fmt="qwen25vl", resize_rule=rule)
    (group,) = generator.generate([tasks[0]])
    # the tiny processor's max_pixels is 224 * 224: a 256 x 256 image becomes 224 x 224
    assert group.resized_size == Size(width=224, height=224)
    assert group.format == "qwen25vl"
    size = Size(width=256, height=256)
    region = render_box(tasks[0].region, "qwen25vl", image_size=size, resized_size=group.resized_size)
    assert region.startswith("[") and region in group.canonical_prompt  # region in resized pixels
    parsed, problems = generator.parse(
        '[{"bbox_2d": [0, 0, 112, 224], "label": "left half"}]',
        tasks[0],
        generator.prepare(tasks[0]).prompts[0],
        group.resized_size,
    )
    assert problems == [] and parsed[0].boxes == [pytest.approx((0.0, 0.0, 128.0, 256.0))]


def test_missing_image_is_a_task_error(
    engine: TransformersEngine, dataset: tuple[Path, list[RegionTask]]
) -> None:
    root, tasks = dataset
    bad = tasks[0].model_copy(update={"image": tasks[0].image.model_copy(update={"path": "images/none.png"})})
    with pytest.raises(TaskError, match=r"images/none\.png not found"):
        _generator(engine, root).generate([bad])
    outside = tasks[0].model_copy(update={"image": tasks[0].image.model_copy(update={"path": "../x.png"})})
    with pytest.raises(TaskError, match="leaves the data root"):
        _generator(engine, root).generate([outside])
