"""The synthetic-world benchmark: expressions with known referents, SFT examples, and the smoke size end
to end (world -> SFT -> SPR through the real stage processes -> `spr eval` -> results files).

The smoke run checks the plumbing (files, tables, numbers in range), not the gains. Its size is the
precision tier's smoke (``smoke``: two SPR rounds).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from spr.bench.expressions import all_expressions, sample_expressions
from spr.bench.plot import PLOT_PNG, accuracy_plot
from spr.bench.run import prepare_baseline
from spr.bench.run_report import results_markdown
from spr.bench.seeds_report import seeds_markdown
from spr.bench.sft_data import (
    IGNORE_INDEX,
    Encoder,
    SceneExamples,
    SceneSpec,
    rec_examples,
    region_examples,
)
from spr.bench.sizes import PRECISION_SMOKE as SMOKE
from spr.bench.vision_pretrain import token_labels
from spr.bench.world import SPLITS
from spr.cli.main import main
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


ARMS = ["baseline", "spr-round-1", "spr-round-2", "spr-sft-chosen-round-1", "spr-sft-chosen-round-2"]


def test_smoke_runs_end_to_end_and_writes_the_tables(smoke_run: Path) -> None:
    results = json.loads((smoke_run / "results.json").read_text())
    assert results["size"] == "smoke" and results["seed"] == 0
    assert SMOKE.spr.rounds == 2 and results["config"]["spr"]["rounds"] == 2
    for split in SPLITS:
        assert (smoke_run / "world" / split / "rec.jsonl").stat().st_size > 0
    arms = results["arms"]
    assert [a["name"] for a in arms] == ARMS
    assert [(a["kind"], a["round"]) for a in arms] == [
        ("baseline", 0),
        ("dpo", 1),
        ("dpo", 2),
        ("sft-chosen", 1),
        ("sft-chosen", 2),
    ]
    # every arm, plus the last round under the one-round names
    assert list(results["eval"]) == [*ARMS, "spr", "spr-sft-chosen"]
    assert results["eval"]["spr"] == results["eval"]["spr-round-2"]
    assert results["eval"]["spr-sft-chosen"] == results["eval"]["spr-sft-chosen-round-2"]
    for model in ARMS:
        rec, regions = results["eval"][model]["rec"], results["eval"][model]["regions"]
        assert rec["examples"] == SMOKE.eval_limit
        assert regions["tasks"] == SMOKE.world.test_images  # one region per image
        assert "acc@0.75" in rec and "acc@0.75" in regions
        _in_unit_range(rec)
        _in_unit_range(regions)
        for name in ("rec.json", "regions.json", "rec/test.jsonl", "regions/test.jsonl"):
            assert (smoke_run / "eval" / model / name).is_file()
    for arm in arms[1:]:
        assert (Path(arm["adapter"]) / "adapter_config.json").is_file(), arm
    spr_dir = smoke_run / "spr" / "spr"
    for r in (1, 2):
        assert (spr_dir / f"sft-chosen-round-{r}" / "adapter_config.json").is_file()
        assert (spr_dir / "train" / f"round-{r - 1:03d}" / "adapter" / "adapter_config.json").is_file()
    assert arms[1]["adapter"] != arms[2]["adapter"] and arms[3]["adapter"] != arms[4]["adapter"]
    rounds = results["spr"]["rounds"]
    assert [r["index"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["pairs"]["pairs"] >= 1 and r["train"]["steps"] >= 1
        assert r["train"]["pairs"] == r["train"]["end"] - r["train"]["start"] >= 1
        assert set(r["wall_s"]) >= {"generator", "scorer", "trainer"}
    assert rounds[0]["train"]["start"] == 0 and rounds[1]["train"]["start"] == rounds[0]["train"]["end"]
    summary = results["spr"]["summary"]
    assert summary["regions"] == SMOKE.spr.rounds * SMOKE.world.spr_images  # the tasks again each round
    assert summary["pairs"] == sum(r["pairs"]["pairs"] for r in rounds)
    clip = results["clip"]
    assert clip["trained"] and 0.0 <= clip["retrieval"]["object_top1"] <= 1.0
    assert (smoke_run / "clip" / "clip.json").is_file()
    curve = results["sft"]["curve"]
    assert [p["step"] for p in curve] == [SMOKE.sft.total_steps]
    _in_unit_range(curve[0]["rec"])
    assert results["wall_s"]["total"] > 0
    text = (smoke_run / "RESULTS.md").read_text()
    assert text == (smoke_run.parent / "docs" / "RESULTS.md").read_text()
    assert text == results_markdown(results)
    for heading in (
        "**Smoke size:",
        "## REC on held-out",
        "## Region descriptions",
        "learning curve",
        "## Semantic",
        "## SPR run",
        "## SPR rounds",
    ):
        assert heading in text
    _assert_arm_rows(text)
    assert f"| + SPR round 2 (DPO LoRA) | {SMOKE.eval_limit} |" in text
    for r in rounds:
        pairs = r["pairs"]
        row = (
            f"| {r['index']} | {pairs['pairs']} | {pairs['mean_chosen_localization']:.3f} / "
            f"{pairs['mean_rejected_localization']:.3f} | "
        )
        assert row in text, row


ARM_LABELS = [
    "SFT baseline",
    "+ SPR round 1 (DPO LoRA)",
    "+ SFT on chosen, round 1",
    "+ SPR round 2 (DPO LoRA)",
    "+ SFT on chosen, round 2",
]


def _assert_arm_rows(text: str) -> None:
    """The REC table lists each arm once, in round order (the last round's aliases not again)."""
    table = text.split("## REC on held-out")[1].split("\n\n")[1]
    rows = table.splitlines()[2:]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == ARM_LABELS
    assert "+ SPR (DPO LoRA)" not in text and "| + spr" not in text


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


def test_sizes_by_device_and_the_crowded_large_size_changes_only_the_baseline_training() -> None:
    from dataclasses import replace

    from spr.bench.sizes import CROWDED, CROWDED_LARGE, CROWDED_SMOKE, PRECISION, SIZES, default_size

    assert default_size("cuda") == default_size("cuda:1") == "crowded-large"
    assert default_size("cpu") == "precision"
    assert SIZES["crowded-large"] is CROWDED_LARGE and SIZES["precision"] is PRECISION
    assert SIZES["smoke"] is SMOKE and SIZES["crowded-smoke"] is CROWDED_SMOKE
    assert set(SIZES) == {"smoke", "precision", "crowded-smoke", "crowded", "crowded-large"}
    assert CROWDED_LARGE.sft.total_steps > CROWDED.sft.total_steps
    assert CROWDED_LARGE.sft.vision_pretrain.steps > 0
    # world, SPR and evaluation are the crowded size's, so the two sizes' numbers compare
    assert replace(CROWDED_LARGE, name=CROWDED.name, sft=CROWDED.sft) == CROWDED


def _seeds_with(smoke_run: Path, dpo: dict[int, dict[str, tuple[float, float]]]) -> list[dict[str, Any]]:
    """Two seeds from the smoke run's results: every accuracy 0 except the DPO arms' of ``dpo``
    (round -> threshold -> (seed 0, seed 1) value), REC and regions alike."""
    first = json.loads((smoke_run / "results.json").read_text())
    second = copy.deepcopy(first)
    second["seed"] = 1
    for index, run in enumerate((first, second)):
        for metrics in run["eval"].values():
            for task in ("rec", "regions"):
                for t in ("0.5", "0.6", "0.7", "0.75", "0.8", "0.9"):
                    metrics[task][f"acc@{t}"] = 0.0
        for r, values in dpo.items():
            for task in ("rec", "regions"):
                for t, pair in values.items():
                    run["eval"][f"spr-round-{r}"][task][f"acc@{t}"] = pair[index]
    return [first, second]


def test_seed_report_checks_the_goal_per_round(smoke_run: Path) -> None:
    # round 1: grows but within the spread at 0.75; round 2: beats the baseline and SFT, and grows
    runs = _seeds_with(
        smoke_run,
        {
            1: {"0.5": (0.0, 0.0), "0.75": (0.0, 0.2), "0.9": (0.3, 0.3)},
            2: {"0.5": (0.1, 0.1), "0.75": (0.3, 0.4), "0.9": (0.5, 0.7)},
        },
    )
    text = seeds_markdown(runs)
    assert "seeds 0, 1" in text and "**Smoke size:" in text
    assert "![accuracy vs IoU]" not in text
    assert (
        "| + SPR round 2 (DPO LoRA) | rec | +10.0 ± 0.0 | +0.0 ± 0.0 | +0.0 ± 0.0 | +35.0 ± 7.1 | +0.0 ± 0.0 "
        "| +60.0 ± 14.1 |" in text
    )
    # every arm once per table, none under the alias names
    _assert_arm_rows(text)
    assert text.count("| + SFT on chosen, round 2 | rec |") == 1
    round_1, round_2 = text.split("### Round 1")[1].split("### Round 2")
    assert (
        "- REC: gain over the baseline at IoU 0.75 / 0.9 = +10.0 ± 14.1 / +30.0 ± 0.0 points: does NOT beat "
        "the seed spread; the gain grows with the threshold (0.5 -> 0.75 -> 0.9: +0.0 -> +10.0 -> +30.0)."
        in round_1
    )
    assert "- Round 1 does NOT meet the goal (REC gain within the spread;" in round_1
    assert (
        "- REC: gain over the baseline at IoU 0.75 / 0.9 = +35.0 ± 7.1 / +60.0 ± 14.1 points: beats the seed "
        "spread; the gain grows with the threshold (0.5 -> 0.75 -> 0.9: +10.0 -> +35.0 -> +60.0)." in round_2
    )
    assert (
        "- regions: DPO beats SFT on chosen (round 2) by more than the spread at IoU 0.75 / 0.9 "
        "(35.0 vs 0.0 % / 60.0 vs 0.0 %; difference +35.0 ± 7.1 / +60.0 ± 14.1 points)." in round_2
    )
    assert "- Round 2 **meets the goal**." in round_2
    assert "| seed | CLIP object top-1 % | CLIP region top-1 % | pairs | pairs per round |" in text
    pairs = " / ".join(str(r["pairs"]["pairs"]) for r in runs[0]["spr"]["rounds"])
    assert f"| 1 | {100 * runs[0]['clip']['retrieval']['object_top1']:.1f} |" in text
    assert f"| {pairs} |" in text
    seconds = [f"{run['sft']['seconds']:.0f}" for run in runs]
    assert f"| SFT baseline training | {seconds[0]} | {seconds[1]} |" in text


def test_seed_report_does_not_call_a_flat_gain_or_one_seed_a_success(smoke_run: Path) -> None:
    # the same gain at every threshold, well above the spread: beats it, but does not grow
    flat = _seeds_with(smoke_run, {2: {t: (0.4, 0.5) for t in ("0.5", "0.75", "0.9")}})
    round_2 = seeds_markdown(flat).split("### Round 2")[1]
    assert "points: beats the seed spread; the gain does NOT grow with the threshold" in round_2
    assert "- Round 2 does NOT meet the goal (REC gain does not grow; regions gain does not grow)." in round_2
    # a gain that would meet the goal on two seeds, on one seed: no spread, no verdict of success
    grows = {"0.5": (0.1, 0.1), "0.75": (0.3, 0.4), "0.9": (0.5, 0.7)}
    one = seeds_markdown(_seeds_with(smoke_run, {2: grows})[:1])
    assert "One seed: there is no seed spread" in one
    assert "meets the goal**" not in one and "- Round 2 does NOT meet the goal (one seed;" in one
    # SFT on chosen as good as DPO: the DPO part fails
    same = _seeds_with(smoke_run, {2: grows})
    for run in same:
        run["eval"]["spr-sft-chosen-round-2"] = copy.deepcopy(run["eval"]["spr-round-2"])
    round_2 = seeds_markdown(same).split("### Round 2")[1]
    assert "- REC: DPO does NOT beat SFT on chosen (round 2)" in round_2
    assert "- Round 2 does NOT meet the goal (REC DPO not above SFT on chosen;" in round_2


def test_reports_read_results_written_before_rounds(smoke_run: Path) -> None:
    old = json.loads((smoke_run / "results.json").read_text())
    del old["arms"], old["spr"]["rounds"], old["config"]["spr"]["rounds"]
    old["eval"] = {key: old["eval"][key] for key in ("baseline", "spr", "spr-sft-chosen")}
    for metrics in old["eval"].values():
        del metrics["rec"]["acc@0.75"], metrics["regions"]["acc@0.75"]
    text = results_markdown(old)
    assert "| + SPR round 1 (DPO LoRA) | 4 | 0.0 | 0.0 | 0.0 | n/a |" in text
    assert "| + SFT on chosen, round 1 | 4 |" in text and "round 2" not in text
    assert "## SPR rounds" in text and f"| 1 | {old['spr']['summary']['pairs']} |" in text
    seeds = seeds_markdown([old, old | {"seed": 1}])
    assert "### Round 1" in seeds and "gain over the baseline at IoU 0.75 / 0.9 = n/a / +0.0 ± 0.0" in seeds
    assert "does NOT meet the goal" in seeds


def test_accuracy_plot_is_a_png_of_every_arm_over_seeds(smoke_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    runs = _seeds_with(smoke_run, {2: {"0.5": (0.1, 0.1), "0.75": (0.3, 0.4), "0.9": (0.5, 0.7)}})
    two = accuracy_plot(runs, tmp_path / "two" / PLOT_PNG)
    one = accuracy_plot(runs[:1], tmp_path / "one.png")
    assert two == tmp_path / "two" / PLOT_PNG
    for path in (one, two):
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
        with Image.open(path) as image:
            assert image.size == (1100, 528)
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 50  # drawn, not blank
    assert one.read_bytes() != two.read_bytes()  # error bars with two seeds
    with pytest.raises(ValueError):
        accuracy_plot([], tmp_path / "none.png")


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


def test_precision_scenes_have_distinct_colours_and_whole_image_regions() -> None:
    from spr.bench.sizes import PRECISION
    from spr.shared.formats import parse

    world = PRECISION.world
    spec = SceneSpec(
        image_size=128,
        min_objects=2,
        max_objects=2,
        kinds=("rec", "regions"),
        distinct_colours=world.distinct_colours,
        regions=world.region_config(),
    )
    scenes = SceneExamples(spec)
    for seed in range(5):
        examples = scenes.draw(np.random.default_rng(seed))
        [region] = [e for e in examples if e.kind == "regions"]
        assert "(0,0),(1000,1000)" in region.prompt  # the whole image: no box given away
        labels = [
            p.text for p in parse(region.answer, "qwen2vl", image_size=Size(width=128, height=128)).phrases
        ]
        assert len(labels) == 2 and len({label.split()[0] for label in labels}) == 2  # distinct colours
        for rec in (e for e in examples if e.kind == "rec"):
            colour = rec.prompt.split("the ", 1)[1].split()[0]
            assert sum(label.startswith(colour) for label in labels) == 1  # the colour names one shape


def test_seeds_side_by_side_write_the_report_and_the_plot(tmp_path: Path) -> None:
    workdir = tmp_path / "seeds"
    markdown = tmp_path / "docs" / "RESULTS.md"
    markdown.parent.mkdir(parents=True)
    markdown.write_text("# Results\n\nReading.\n\n<!-- bench:start -->\nOLD TABLES\n<!-- bench:end -->\n")
    argv = ["bench", "shapes", "--smoke", "--seeds", "3", "4", "--jobs", "2", "--workdir", str(workdir)]
    assert main([*argv, "--markdown", str(markdown)]) == 0
    runs = [json.loads((workdir / f"seed-{s}" / "results.json").read_text()) for s in (3, 4)]
    assert [run["seed"] for run in runs] == [3, 4]
    assert runs[0]["eval"]["baseline"] != runs[1]["eval"]["baseline"] or runs[0]["sft"] != runs[1]["sft"]
    assert "SFT step" in (workdir / "seed-3.log").read_text()  # each seed's process logged to its file
    text = markdown.read_text()
    assert "seeds 3, 4" in text and f"]({PLOT_PNG})" in text
    assert text.startswith("# Results\n\nReading.") and "OLD TABLES" not in text  # the reading stays
    assert (markdown.parent / PLOT_PNG).read_bytes().startswith(b"\x89PNG")


def test_collect_reports_the_main_run_and_every_ablation(smoke_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "collected"
    workdir.mkdir()
    main_run = json.loads((smoke_run / "results.json").read_text())
    (workdir / "results.json").write_text(json.dumps(main_run))
    ablation = copy.deepcopy(main_run)  # one round, DPO only
    ablation["variant"] = "lambda0"
    ablation["config"]["spr"] |= {"semantic_lambda": 0.0, "rounds": 1}
    ablation["arms"] = [
        {"name": "baseline", "kind": "baseline", "round": 0, "adapter": None},
        {"name": "lambda0-round-1", "kind": "dpo", "round": 1, "adapter": "a"},
    ]
    arm = copy.deepcopy(main_run["eval"]["baseline"])
    arm["rec"]["acc@0.5"] += 0.25  # 25 points over the baseline at IoU 0.5
    ablation["eval"] = {"baseline": main_run["eval"]["baseline"], "lambda0-round-1": arm, "lambda0": arm}
    (workdir / "results-lambda0.json").write_text(json.dumps(ablation))
    docs = tmp_path / "RESULTS.md"
    docs.write_text(
        "# Results\n\nHand-written reading.\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\nTail.\n"
    )
    assert main(["bench", "shapes", "--workdir", str(workdir), "--collect", "--markdown", str(docs)]) == 0
    text = docs.read_text()
    assert text.startswith("# Results\n\nHand-written reading.") and text.endswith("Tail.\n")
    assert "old" not in text and "## Ablations" in text
    assert f"![accuracy vs IoU]({PLOT_PNG})" in text
    ablations = text.split("## Ablations")[1]
    rows = [line for line in ablations.splitlines() if line.startswith("| + ")]
    assert [row.split(" | ")[:2] for row in rows] == [
        # every round of the main run (a one-round ablation compares with its first), each ablation's last
        ["| + SPR round 1 (DPO LoRA)", "main settings"],
        ["| + SFT on chosen, round 1", "main settings"],
        ["| + SPR round 2 (DPO LoRA)", "main settings"],
        ["| + SFT on chosen, round 2", "main settings"],
        ["| + lambda0 round 1 (DPO LoRA)", "semantic_lambda 0.0, rounds 1"],
    ]
    assert "| +25.0 |" in rows[4]
    assert (workdir / "RESULTS-all.md").read_text().rstrip() in text
    for folder in (workdir, tmp_path):  # beside RESULTS-all.md and beside --markdown
        assert (folder / PLOT_PNG).read_bytes().startswith(b"\x89PNG")
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
        run["eval"]["spr-round-2"]["rec"]["acc@0.9"] = seed / 100
        (folder / "results.json").write_text(json.dumps(run))
    ablation = copy.deepcopy(main_run)
    ablation["variant"] = "hungarian"
    ablation["config"]["spr"]["localization"] = "hungarian"
    ablation["eval"] = {"baseline": main_run["eval"]["baseline"], "hungarian": main_run["eval"]["baseline"]}
    del ablation["arms"]  # written before SPR had rounds: one round under the variant's name
    (tmp_path / "seed-2" / "results-hungarian.json").write_text(json.dumps(ablation))
    (tmp_path / "seed-x").mkdir()  # not a seed folder
    assert main(["bench", "shapes", "--workdir", str(tmp_path), "--collect"]) == 0
    text = (tmp_path / "RESULTS-all.md").read_text()
    assert "seeds 0, 2, 10" in text and f"![accuracy vs IoU]({PLOT_PNG})" in text
    assert (tmp_path / PLOT_PNG).read_bytes().startswith(b"\x89PNG")
    assert "## Ablations, seed 2 (" in text and "localization hungarian" in text
    assert "| + hungarian round 1 (DPO LoRA) | localization hungarian" in text
    assert "Ablations, seed 0" not in text and "Ablations, seed 10" not in text


def test_cached_baseline_identity_ignores_the_settings_of_skipped_vision_pretraining(tmp_path: Path) -> None:
    from dataclasses import replace

    from spr.bench.sft import SftError, _identity, load_cached
    from spr.bench.sizes import CROWDED
    from spr.bench.world import World

    world = World(tmp_path / "world", CROWDED.world)
    identity = _identity(CROWDED.sft, world)
    # a baseline recorded before the pre-training config had its later fields
    del identity["sft"]["vision_pretrain"]["box_weight"]
    (tmp_path / "baseline").mkdir()
    record = {"identity": identity, "curve": [], "seconds": 1.0, "parameters": 7}
    (tmp_path / "baseline" / "sft.json").write_text(json.dumps(record))
    cached = load_cached(tmp_path / "baseline", CROWDED.sft, world)
    assert cached is not None and cached.reused and cached.parameters == 7
    pretrained = replace(CROWDED.sft, vision_pretrain=replace(CROWDED.sft.vision_pretrain, steps=10))
    with pytest.raises(SftError, match="another config"):
        load_cached(tmp_path / "baseline", pretrained, world)


def test_scene_workers_draw_different_scenes_in_a_reproducible_order(tiny_models: Any) -> None:
    from spr.bench.scene_stream import scene_loader
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
