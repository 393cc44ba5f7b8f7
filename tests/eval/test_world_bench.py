"""The synthetic-world benchmark: expressions with known referents, SFT examples, and the smoke size end
to end (world -> SFT -> SPR through the real stage processes -> `spr eval` -> results files).

The smoke run checks the plumbing (files, tables, numbers in range), not the gains.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from spr.cli.main import main
from spr.eval.world.bench import prepare_baseline
from spr.eval.world.expressions import all_expressions, sample_expressions
from spr.eval.world.report import seeds_markdown
from spr.eval.world.sft_data import (
    IGNORE_INDEX,
    Encoder,
    SceneExamples,
    SceneSpec,
    rec_examples,
    region_examples,
)
from spr.eval.world.sizes import SMOKE
from spr.eval.world.vision_pretrain import token_labels
from spr.eval.world.world import SPLITS
from spr.shared.datasets.synthetic import COLOURS, SHAPES
from spr.shared.schemas import AnnotatedObject, Size


def _obj(label: str, x1: float, y1: float, x2: float, y2: float) -> AnnotatedObject:
    return AnnotatedObject(label=label, box=(x1, y1, x2, y2))


def test_expressions_name_exactly_one_object() -> None:
    objects = [
        _obj("red circle", 0, 0, 10, 10),  # left of the square
        _obj("red circle", 60, 0, 70, 10),  # right of the square
        _obj("blue square", 30, 0, 40, 10),
        _obj("green star", 30, 50, 40, 60),  # below everything
    ]
    texts = {e.text: e.target for e in all_expressions(objects)}
    assert "the red circle" not in texts  # two of them: a bare label would be ambiguous
    assert texts["the red circle left of the blue square"] == 0
    assert texts["the red circle right of the blue square"] == 1
    assert texts["the blue square"] == 2
    assert texts["the green star below the blue square"] == 3
    # both circles are above the star, so that relation names neither
    assert "the red circle above the green star" not in texts
    chosen = sample_expressions(objects, np.random.default_rng(0), count=3)
    assert len(chosen) == 3 and len({e.text for e in chosen}) == 3
    assert sum(e.kind == "relation" for e in chosen) >= 1


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("bench") / "shapes"
    markdown = workdir.parent / "docs" / "RESULTS.md"
    code = main(
        [
            "bench",
            "shapes",
            "--smoke",
            "--workdir",
            str(workdir),
            "--threads",
            "1",
            "--markdown",
            str(markdown),
        ]
    )
    assert code == 0
    return workdir


def _in_unit_range(metrics: dict[str, Any]) -> None:
    for key, value in metrics.items():
        if key.startswith("acc@") or key.endswith(("rate", "iou", "s_loc")) or key in ("recall", "precision"):
            assert 0.0 <= value <= 1.0, (key, value)


def test_smoke_runs_end_to_end_and_writes_the_tables(smoke_run: Path) -> None:
    results = json.loads((smoke_run / "results.json").read_text())
    assert results["size"] == "smoke" and results["seed"] == 0
    for split in SPLITS:
        assert (smoke_run / "world" / split / "rec.jsonl").stat().st_size > 0
    assert list(results["eval"]) == ["baseline", "spr", "spr-sft-chosen"]
    for model in results["eval"]:
        rec, regions = results["eval"][model]["rec"], results["eval"][model]["regions"]
        assert rec["examples"] == SMOKE.eval_limit
        assert regions["tasks"] == SMOKE.world.test_images  # one region per image
        _in_unit_range(rec)
        _in_unit_range(regions)
        for name in ("rec.json", "regions.json", "rec/test.jsonl", "regions/test.jsonl"):
            assert (smoke_run / "eval" / model / name).is_file()
    summary = results["spr"]["summary"]
    assert summary["regions"] == SMOKE.world.spr_images
    assert summary["pairs"] >= 1 and summary["train"]["steps"] >= 1
    assert (smoke_run / "spr" / "spr" / "train" / "adapter" / "adapter_config.json").is_file()
    clip = results["clip"]
    assert clip["trained"] and 0.0 <= clip["retrieval"]["object_top1"] <= 1.0
    assert (smoke_run / "clip" / "clip.json").is_file()
    curve = results["sft"]["curve"]
    assert [p["step"] for p in curve] == [SMOKE.sft.total_steps]
    _in_unit_range(curve[0]["rec"])
    assert results["wall_s"]["total"] > 0
    text = (smoke_run / "RESULTS.md").read_text()
    assert text == (smoke_run.parent / "docs" / "RESULTS.md").read_text()
    for heading in (
        "## REC on held-out",
        "## Region descriptions",
        "learning curve",
        "## Semantic",
        "## SPR run",
    ):
        assert heading in text
    assert "| + SPR (DPO LoRA) | 4 |" in text and "| + SFT on chosen (LoRA) | 4 |" in text
    assert (smoke_run / "spr" / "spr" / "sft-chosen" / "adapter_config.json").is_file()


def test_baseline_checkpoint_is_cached_and_loads_for_training(smoke_run: Path) -> None:
    world, baseline = prepare_baseline(smoke_run, SMOKE.with_seed(0).with_threads(1))
    assert baseline.reused and baseline.model == smoke_run / "baseline"
    from transformers import AutoModelForImageTextToText, AutoProcessor

    auto_processor: Any = AutoProcessor
    processor = auto_processor.from_pretrained(baseline.model)
    model: Any = AutoModelForImageTextToText.from_pretrained(baseline.model)
    assert model.config.text_config.rope_parameters["rope_theta"] == SMOKE.sft.spec.rope_theta
    # loss only on the answer: the unmasked labels decode to the answer and the end of the turn
    examples = rec_examples(world.rec("train"))[:1] + region_examples(world.regions("train"))[:1]
    batch = Encoder(processor, world.root).batch(examples)
    for row, example in enumerate(examples):
        labels = batch["labels"][row]
        answer = processor.tokenizer.decode(labels[labels != IGNORE_INDEX].tolist())
        assert answer == example.answer + "<|im_end|>"
    assert float(model(**batch).loss.detach()) > 0


def test_bad_options_are_refused_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["bench", "shapes", "--smoke", "--workdir", str(tmp_path)]
    assert main([*base, "--variant", "baseline"]) == 2
    assert "--variant" in capsys.readouterr().err
    assert main([*base, "--semantic-lambda", "1.5"]) == 2
    assert "--semantic-lambda" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_a_gpu_gets_the_large_size_which_changes_only_the_baseline_training() -> None:
    from dataclasses import replace

    from spr.eval.world.sizes import DEFAULT, LARGE, SIZES, default_size

    assert default_size("cuda") == default_size("cuda:1") == "large"
    assert default_size("cpu") == "default"
    assert SIZES["large"] is LARGE
    assert LARGE.sft.total_steps > DEFAULT.sft.total_steps and LARGE.sft.vision_pretrain.steps > 0
    # world, SPR and evaluation are the default's, so the two sizes' numbers compare
    assert replace(LARGE, name=DEFAULT.name, sft=DEFAULT.sft) == DEFAULT


def test_seed_report_gives_mean_and_spread_and_checks_the_goal(smoke_run: Path) -> None:
    first = json.loads((smoke_run / "results.json").read_text())
    second = copy.deepcopy(first)
    second["seed"] = 1
    for run, value in ((first, 0.5), (second, 0.7)):
        for arm in run["eval"]:
            for task in ("rec", "regions"):
                for t in ("0.5", "0.6", "0.7", "0.8", "0.9"):
                    run["eval"][arm][task][f"acc@{t}"] = 0.0
        run["eval"]["spr"]["rec"]["acc@0.8"] = value
        run["eval"]["spr"]["rec"]["acc@0.9"] = value
    text = seeds_markdown([first, second])
    assert "seeds 0, 1" in text
    assert (
        "| + SPR (DPO LoRA) | rec | +0.0 ± 0.0 | +0.0 ± 0.0 | +0.0 ± 0.0 | +60.0 ± 14.1 | +60.0 ± 14.1 |"
        in text
    )
    assert "- rec: gain at IoU 0.8 / 0.9 = +60.0 / +60.0 points (spread 14.1 / 14.1): beats" in text
    assert "the gain grows with the threshold" in text
    # no gain anywhere neither beats the spread nor grows
    regions = "- regions: gain at IoU 0.8 / 0.9 = +0.0 / +0.0 points (spread 0.0 / 0.0): does NOT beat"
    assert regions in text and "the gain does NOT grow" in text
    assert (
        "- rec: DPO beats SFT on chosen at IoU 0.8 by more than the spread (60.0 vs 0.0 %; difference "
        "+60.0 ± 14.1 points)." in text
    )
    assert "- regions: DPO does NOT beat SFT on chosen" in text
    assert "| seed | CLIP object top-1 % | CLIP region top-1 % | pairs |" in text
    assert f"| 1 | {100 * first['clip']['retrieval']['object_top1']:.1f} |" in text
    seconds = [f"{run['sft']['seconds']:.0f}" for run in (first, second)]
    assert f"| SFT baseline training | {seconds[0]} | {seconds[1]} |" in text


def test_token_labels_mark_the_cells_a_shape_covers() -> None:
    # 64-pixel image, 2 x 2 cells of 32 px: a red circle fills the top-left cell, a blue star covers
    # a fifth of the bottom-right cell (below min_cover) and half of the bottom-left one
    shapes = [("red circle", (0, 0, 32, 32), 0), ("blue star", (16, 32, 38, 64), 0)]
    colour, shape, boxes = token_labels(shapes, side=64, grid=2, min_cover=0.25)
    red, blue = 1 + list(COLOURS).index("red"), 1 + list(COLOURS).index("blue")
    circle, star = 1 + SHAPES.index("circle"), 1 + SHAPES.index("star")
    assert colour.tolist() == [red, 0, blue, 0]
    assert shape.tolist() == [circle, 0, star, 0]
    assert boxes.tolist() == [[0, 0, 0.5, 0.5], [0] * 4, [0.25, 0.5, 38 / 64, 1.0], [0] * 4]


def test_scene_examples_are_fresh_and_answer_with_the_scene_boxes() -> None:
    from spr.shared.formats import parse

    scenes = SceneExamples(SceneSpec(image_size=128, min_objects=5, max_objects=6, kinds=("rec", "regions")))
    first = scenes.draw(np.random.default_rng(1))
    again = scenes.draw(np.random.default_rng(1))
    other = scenes.draw(np.random.default_rng(2))
    assert [e.answer for e in first] == [e.answer for e in again]
    assert [e.answer for e in first] != [e.answer for e in other]
    kinds = [e.kind for e in first]
    assert "rec" in kinds and "regions" in kinds
    assert len({e.image for e in first}) == 1 and first[0].picture.size == (128, 128)
    for example in first:
        parsed = parse(example.answer, "qwen2vl", image_size=Size(width=128, height=128))
        assert parsed.phrases and not parsed.problems
        for phrase in parsed.phrases:
            x1, y1, x2, y2 = phrase.boxes[0]
            assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128


def test_collect_reports_the_main_run_and_every_ablation(smoke_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "collected"
    workdir.mkdir()
    main_run = json.loads((smoke_run / "results.json").read_text())
    (workdir / "results.json").write_text(json.dumps(main_run))
    ablation = copy.deepcopy(main_run)
    ablation["variant"] = "lambda0"
    ablation["config"]["spr"]["semantic_lambda"] = 0.0
    ablation["eval"] = {
        "baseline": main_run["eval"]["baseline"],
        "lambda0": copy.deepcopy(main_run["eval"]["baseline"]),
    }
    ablation["eval"]["lambda0"]["rec"]["acc@0.5"] += 0.25  # 25 points over the baseline at IoU 0.5
    (workdir / "results-lambda0.json").write_text(json.dumps(ablation))
    docs = tmp_path / "RESULTS.md"
    docs.write_text(
        "# Results\n\nHand-written reading.\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\nTail.\n"
    )
    assert main(["bench", "shapes", "--workdir", str(workdir), "--collect", "--markdown", str(docs)]) == 0
    text = docs.read_text()
    assert text.startswith("# Results\n\nHand-written reading.") and text.endswith("Tail.\n")
    assert "old" not in text and "## Ablations" in text
    rows = [line for line in text.splitlines() if line.startswith("| + lambda0")]
    assert len(rows) == 1 and "semantic_lambda 0.0" in rows[0] and "| +25.0 |" in rows[0]
    assert (workdir / "RESULTS-all.md").is_file()
    assert main(["bench", "shapes", "--workdir", str(tmp_path / "empty"), "--collect"]) == 2


def test_collect_over_seed_folders_gives_the_seeds_report_and_each_seeds_ablations(
    smoke_run: Path, tmp_path: Path
) -> None:
    main_run = json.loads((smoke_run / "results.json").read_text())
    for seed in (0, 2, 10):  # numeric order, not 0, 10, 2
        folder = tmp_path / f"seed-{seed}"
        folder.mkdir()
        run = copy.deepcopy(main_run)
        run["seed"] = seed
        run["eval"]["spr"]["rec"]["acc@0.9"] = seed / 100
        (folder / "results.json").write_text(json.dumps(run))
    ablation = copy.deepcopy(main_run)
    ablation["variant"] = "hungarian"
    ablation["config"]["spr"]["localization"] = "hungarian"
    ablation["eval"] = {"baseline": main_run["eval"]["baseline"], "hungarian": main_run["eval"]["baseline"]}
    (tmp_path / "seed-2" / "results-hungarian.json").write_text(json.dumps(ablation))
    (tmp_path / "seed-x").mkdir()  # not a seed folder
    assert main(["bench", "shapes", "--workdir", str(tmp_path), "--collect"]) == 0
    text = (tmp_path / "RESULTS-all.md").read_text()
    assert "seeds 0, 2, 10" in text
    assert "## Ablations, seed 2 (" in text and "localization hungarian" in text
    assert "Ablations, seed 0" not in text and "Ablations, seed 10" not in text


def test_cached_baseline_identity_ignores_the_settings_of_skipped_vision_pretraining(tmp_path: Path) -> None:
    from dataclasses import replace

    from spr.eval.world.sft import SftError, _identity, load_cached
    from spr.eval.world.sizes import DEFAULT
    from spr.eval.world.world import World

    world = World(tmp_path / "world", DEFAULT.world)
    identity = _identity(DEFAULT.sft, world)
    # a baseline recorded before the pre-training config had its later fields
    del identity["sft"]["vision_pretrain"]["box_weight"]
    (tmp_path / "baseline").mkdir()
    record = {"identity": identity, "curve": [], "seconds": 1.0, "parameters": 7}
    (tmp_path / "baseline" / "sft.json").write_text(json.dumps(record))
    cached = load_cached(tmp_path / "baseline", DEFAULT.sft, world)
    assert cached is not None and cached.reused and cached.parameters == 7
    pretrained = replace(DEFAULT.sft, vision_pretrain=replace(DEFAULT.sft.vision_pretrain, steps=10))
    with pytest.raises(SftError, match="another config"):
        load_cached(tmp_path / "baseline", pretrained, world)


def test_scene_workers_draw_different_scenes_in_a_reproducible_order(tiny_models: Any) -> None:
    from spr.eval.world.scene_stream import scene_loader
    from transformers import AutoProcessor

    auto_processor: Any = AutoProcessor
    encoder = Encoder(auto_processor.from_pretrained(tiny_models.qwen2vl), Path("."))
    scenes = SceneExamples(SceneSpec(image_size=64, min_objects=1, max_objects=1, kinds=("rec",)))

    def first_batches() -> list[Any]:
        batches = scene_loader(encoder, scenes, batch_size=2, seed=[5], workers=2)
        return [next(batches) for _ in range(4)]

    taken = first_batches()
    assert all(batch["input_ids"].shape[0] == 2 for batch in taken)
    assert not np.array_equal(taken[0]["pixel_values"].numpy(), taken[1]["pixel_values"].numpy())
    again = first_batches()  # batches alternate between workers, each seeded by its id
    assert all(
        np.array_equal(a["pixel_values"].numpy(), b["pixel_values"].numpy())
        for a, b in zip(taken, again, strict=True)
    )
