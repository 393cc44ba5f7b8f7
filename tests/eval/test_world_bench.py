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
from spr.eval.world.sft_data import IGNORE_INDEX, Encoder, rec_examples, region_examples
from spr.eval.world.sizes import SMOKE
from spr.eval.world.world import SPLITS
from spr.shared.schemas import AnnotatedObject


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
    assert "- regions: gain at IoU 0.8 / 0.9 = +0.0 / +0.0 points (spread 0.0 / 0.0): does NOT beat" in text
    assert "- rec: DPO beats SFT on chosen at IoU 0.8 (60.0 vs 0.0 %)." in text
