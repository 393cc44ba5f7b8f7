"""`spr eval rec` and `spr eval regions` end to end: with the tiny model (output structure; a random
model scores ~0), with a LoRA adapter, and on precomputed answers known to be right or wrong (the
accuracy pipeline proven without a model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from spr.cli.main import main
from spr.eval.data import RecAnswer, RecExample, RecPrediction, RegionAnswer, read_jsonl, write_jsonl
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.formats import render
from spr.shared.formats.reader import ResizeRule
from spr.shared.regions import build_regions
from spr.shared.schemas import GroundingFormat, RegionTask, Size

THRESHOLD_KEYS = ["0.5", "0.6", "0.7", "0.75", "0.8", "0.9"]
FAST = ["--torch-threads", "1", "--max-new-tokens", "6"]


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class World:
    root: Path  # the data root: images/ and the jsonl files
    val: Path  # REC examples with width/height
    test: Path  # REC examples without them (sizes read from the image files)
    tasks: Path  # region tasks


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("eval-world")
    annotations = write_synthetic_dataset(root, images=2, seed=5)
    val: list[RecExample] = []
    test: list[RecExample] = []
    tasks: list[RegionTask] = []
    for image, objects in load_coco(annotations):
        for i, obj in enumerate(objects[:4]):
            example = RecExample(
                id=f"{image.path}#{i}",
                image=image.path,
                expression=f"the {obj.label}",
                box=obj.box,
                width=image.width,
                height=image.height,
            )
            (val if i % 2 == 0 else test).append(example)
        tasks.extend(build_regions(image, objects, seed=0, source="eval-test"))
    test = [e.model_copy(update={"width": None, "height": None, "id": None}) for e in test]
    write_jsonl(root / "val.jsonl", val)
    write_jsonl(root / "test.jsonl", test)
    write_jsonl(root / "tasks.jsonl", tasks)
    return World(root, root / "val.jsonl", root / "test.jsonl", root / "tasks.jsonl")


def _results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _right(box: tuple[float, float, float, float], image: Size, fmt: GroundingFormat, **kw: Any) -> str:
    return render([("it", [box])], fmt, image_size=image, **kw)


def _wrong(box: tuple[float, float, float, float], image: Size, fmt: GroundingFormat, **kw: Any) -> str:
    # the same box moved sideways by twice its width: a gap of one width, IoU 0 even after rounding
    x1, y1, x2, y2 = box
    shift = 2 * (x2 - x1) if x2 + 2 * (x2 - x1) <= image.width else -2 * (x2 - x1)
    assert x1 + shift >= 0 and x2 + shift <= image.width
    return render([("it", [(x1 + shift, y1, x2 + shift, y2)])], fmt, image_size=image, **kw)


def test_rec_with_the_tiny_model_writes_tables_json_and_rescorable_predictions(
    world: World, tiny_models: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, predictions = tmp_path / "rec.json", tmp_path / "pred"
    args = [
        "eval",
        "rec",
        "--data",
        str(world.val),
        "--data",
        str(world.test),
        "--data-root",
        str(world.root),
    ]
    code = main(
        [
            *args,
            "--model",
            str(tiny_models.qwen2vl),
            *FAST,
            "--out",
            str(out),
            "--predictions",
            str(predictions),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:8] == ["split", "n", *(f"@{t}" for t in THRESHOLD_KEYS)]
    assert [line.split()[0] for line in table[2:5]] == ["val", "test", "mean"]

    results = _results(out)
    assert results["benchmark"] == "rec"
    assert (results["format"], results["engine"], results["adapter"]) == ("qwen2vl", "transformers", None)
    assert results["decoding"]["temperature"] == 0.0
    assert "{expression}" in results["prompt"]
    assert list(results["splits"]) == ["val", "test"]
    for split in ("val", "test"):
        metrics = results["splits"][split]
        assert metrics["examples"] == 4
        assert list(metrics["accuracy"]) == THRESHOLD_KEYS
        assert all(0.0 <= v <= 1.0 for v in metrics["accuracy"].values())
    assert results["mean"]["examples"] == 8

    val_predictions = read_jsonl(predictions / "val.jsonl", RecPrediction, "prediction")
    assert [p.id for p in val_predictions][:2] == ["images/000000.png#0", "images/000000.png#2"]
    test_predictions = read_jsonl(predictions / "test.jsonl", RecPrediction, "prediction")
    assert [p.id for p in test_predictions] == ["0", "1", "2", "3"]  # no ids in the file: line index

    # the predictions file scores again as answers, without the model, to the same numbers
    rescored = tmp_path / "rescored.json"
    answers = ["--answers", str(predictions / "val.jsonl"), "--answers", str(predictions / "test.jsonl")]
    assert main([*args, *answers, "--format", "qwen2vl", "--out", str(rescored)]) == 0
    assert _results(rescored)["splits"] == results["splits"]
    assert _results(rescored)["engine"] is None


def test_rec_answers_known_right_and_wrong(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = read_jsonl(world.val, RecExample, "example")
    right = [
        RecAnswer(id=e.id or "", answer=_right(e.box, Size(width=256, height=256), "qwen2vl"))
        for e in examples
    ]
    wrong = [
        RecAnswer(id=e.id or "", answer=_wrong(e.box, Size(width=256, height=256), "qwen2vl"))
        for e in examples
    ]
    mixed = [right[0], wrong[1], right[2], RecAnswer(id=examples[3].id or "", answer="no box here")]
    for name, answers in (("right", right), ("wrong", wrong), ("mixed", mixed)):
        write_jsonl(tmp_path / f"{name}.jsonl", answers)
    out = tmp_path / "known.json"
    args = ["eval", "rec", "--data-root", str(world.root), "--format", "qwen2vl", "--out", str(out)]
    for name in ("right", "wrong", "mixed"):
        args += ["--data", str(world.val), "--split", name, "--answers", str(tmp_path / f"{name}.jsonl")]
    assert main(args) == 0
    splits = _results(out)["splits"]
    assert splits["right"]["accuracy"] == dict.fromkeys(THRESHOLD_KEYS, 1.0)
    assert splits["right"]["mean_iou"] > 0.9
    assert splits["wrong"]["accuracy"] == dict.fromkeys(THRESHOLD_KEYS, 0.0)
    assert splits["wrong"]["mean_iou"] == 0.0
    assert splits["mixed"]["accuracy"] == dict.fromkeys(THRESHOLD_KEYS, 0.5)
    assert splits["mixed"]["no_box_rate"] == 0.25
    assert _results(out)["mean"]["accuracy"]["0.5"] == pytest.approx(0.5)
    assert "right" in capsys.readouterr().out


def test_rec_qwen25vl_answers_use_the_model_folders_resize_rule(
    world: World, tiny_models: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoImageProcessor

    auto: Any = AutoImageProcessor
    rule = ResizeRule.from_image_processor(auto.from_pretrained(tiny_models.qwen2vl))
    image = Size(width=256, height=256)
    resized = rule.resized(256, 256)
    assert resized != image  # the rule changes coordinates, so reading them as original pixels would miss
    examples = read_jsonl(world.val, RecExample, "example")
    write_jsonl(
        tmp_path / "a.jsonl",
        [
            RecAnswer(id=e.id or "", answer=_right(e.box, image, "qwen25vl", resized_size=resized))
            for e in examples
        ],
    )
    args = [
        "eval",
        "rec",
        "--data",
        str(world.val),
        "--answers",
        str(tmp_path / "a.jsonl"),
        "--format",
        "qwen25vl",
    ]
    out = tmp_path / "q.json"
    assert main([*args, "--model", str(tiny_models.qwen2vl), "--out", str(out)]) == 0
    assert _results(out)["splits"]["val"]["accuracy"]["0.7"] == 1.0
    assert main(args) == 2
    assert "give --model" in capsys.readouterr().err


def test_rec_with_the_tiny_qwen3vl_reads_its_format_from_the_folder(
    world: World, tiny_qwen3vl: Path, tmp_path: Path
) -> None:
    base = [
        "eval",
        "rec",
        "--data",
        str(world.val),
        "--data-root",
        str(world.root),
        "--model",
        str(tiny_qwen3vl),
    ]
    # Answers written on Qwen3-VL's 0-1000 grid score as right with no --format and no resized size.
    examples = read_jsonl(world.val, RecExample, "example")
    image = Size(width=256, height=256)
    write_jsonl(
        tmp_path / "a.jsonl",
        [RecAnswer(id=e.id or "", answer=_right(e.box, image, "qwen3vl")) for e in examples],
    )
    known = tmp_path / "known.json"
    assert main([*base, "--answers", str(tmp_path / "a.jsonl"), "--out", str(known)]) == 0
    assert _results(known)["format"] == "qwen3vl"
    assert _results(known)["splits"]["val"]["accuracy"]["0.9"] == 1.0
    # The model itself answers through the transformers engine.
    generated = tmp_path / "generated.json"
    assert main([*base, *FAST, "--out", str(generated)]) == 0
    assert (_results(generated)["format"], _results(generated)["engine"]) == ("qwen3vl", "transformers")
    assert _results(generated)["splits"]["val"]["examples"] == 4


def test_regions_with_the_tiny_model(world: World, tiny_models: Any, tmp_path: Path) -> None:
    out, predictions = tmp_path / "regions.json", tmp_path / "pred"
    args = [
        "eval",
        "regions",
        "--tasks",
        str(world.tasks),
        "--split",
        "held-out",
        "--model",
        str(tiny_models.qwen2vl),
    ]
    assert main([*args, *FAST, "--out", str(out), "--predictions", str(predictions)]) == 0
    results = _results(out)
    assert results["benchmark"] == "regions" and results["prompt_id"] == "box-v1"
    metrics = results["splits"]["held-out"]
    tasks = read_jsonl(world.tasks, RegionTask, "task")
    assert metrics["tasks"] == len(tasks)
    assert metrics["objects"] == sum(len(t.objects) for t in tasks)
    assert set(metrics) >= {
        "mean_s_loc",
        "recall",
        "precision",
        "accuracy",
        "matched_mean_iou",
        "parse_problem_rate",
    }
    assert list(metrics["accuracy"]) == THRESHOLD_KEYS
    lines = (predictions / "held-out.jsonl").read_text().splitlines()
    assert [json.loads(line)["task_id"] for line in lines] == [t.task_id for t in tasks]


def test_regions_answers_known_right_partial_and_broken(world: World, tmp_path: Path) -> None:
    tasks = read_jsonl(world.tasks, RegionTask, "task")
    image = Size(width=256, height=256)

    def describe(task: RegionTask, keep: int) -> str:
        return render([(o.label, [o.box]) for o in task.objects[:keep]], "qwen2vl", image_size=image)

    full = [RegionAnswer(task_id=t.task_id, answer=describe(t, len(t.objects))) for t in tasks]
    # the first object only, then a box cut off by the end of the text (a parse problem)
    partial = [
        RegionAnswer(task_id=t.task_id, answer=describe(t, 1) + " and <|box_start|>(12,3") for t in tasks
    ]
    write_jsonl(tmp_path / "full.jsonl", full)
    write_jsonl(tmp_path / "partial.jsonl", partial)
    out = tmp_path / "r.json"
    args = ["eval", "regions", "--data-root", str(world.root), "--format", "qwen2vl", "--out", str(out)]
    args += ["--tasks", str(world.tasks), "--answers", str(tmp_path / "full.jsonl")]
    args += [
        "--tasks",
        str(world.tasks),
        "--answers",
        str(tmp_path / "partial.jsonl"),
        "--split",
        "full",
        "--split",
        "partial",
    ]
    assert main(args) == 0
    splits = _results(out)["splits"]
    objects = sum(len(t.objects) for t in tasks)
    assert splits["full"]["mean_s_loc"] > 0.9
    assert (splits["full"]["recall"], splits["full"]["precision"]) == (1.0, 1.0)
    assert splits["full"]["accuracy"]["0.9"] == 1.0 and splits["full"]["parse_problem_rate"] == 0.0
    assert splits["partial"]["recall"] == pytest.approx(len(tasks) / objects)
    assert splits["partial"]["precision"] == 1.0
    assert splits["partial"]["parse_problem_rate"] == 1.0


def test_base_plus_lora_adapter(
    world: World, tiny_models: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import LoraConfig, get_peft_model
    from spr.generator.engines.transformers_engine import TransformersEngine
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_models.qwen2vl)
    # random B matrices (peft's default is zeros, which would make the adapter a no-op)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = tmp_path / "adapter"
    get_peft_model(base, lora).save_pretrained(str(adapter))

    plain = AutoModelForImageTextToText.from_pretrained(tiny_models.qwen2vl).state_dict()
    engine = TransformersEngine(tiny_models.qwen2vl, adapter=adapter, torch_threads=1)
    merged = engine.model.state_dict()
    changed = [k for k in plain if "q_proj.weight" in k and not torch.equal(plain[k], merged[k])]
    assert changed, "the adapter did not change the q_proj weights"
    assert not any("lora" in k for k in merged)  # merged and unloaded: plain weights only
    assert engine.model_id.endswith(f"+{adapter}")
    # The generator samples the same merged policy when SPR_GENERATOR_ADAPTER names the adapter (the
    # next SPR round); other engines refuse it rather than silently sampling the base model.
    from spr.generator.factory import build_engine
    from spr.generator.settings import GeneratorSettings
    from spr.shared.errors import SprError

    settings = GeneratorSettings(
        generator_model=tiny_models.qwen2vl, generator_adapter=adapter, generator_torch_threads=1
    )
    sampler = build_engine(settings)
    assert sampler.model_id == engine.model_id
    assert all(torch.equal(merged[k], v) for k, v in sampler.model.state_dict().items())  # type: ignore[attr-defined]
    with pytest.raises(SprError, match="SPR_GENERATOR_ADAPTER works with SPR_GENERATOR_ENGINE=transformers"):
        build_engine(settings.model_copy(update={"generator_engine": "vllm_offline"}))

    out = tmp_path / "adapter.json"
    args = [
        "eval",
        "rec",
        "--data",
        str(world.val),
        "--model",
        str(tiny_models.qwen2vl),
        *FAST,
        "--limit",
        "1",
    ]
    assert main([*args, "--adapter", str(adapter), "--out", str(out)]) == 0
    assert _results(out)["adapter"] == str(adapter)
    assert main([*args, "--adapter", str(tmp_path)]) == 2
    assert "not a LoRA adapter folder" in capsys.readouterr().err
    assert main([*args, "--adapter", str(adapter), "--engine", "vllm"]) == 2
    assert "--enable-lora" in capsys.readouterr().err


def test_bad_inputs_are_clear_errors(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = tmp_path / "partial.jsonl"
    write_jsonl(partial, [RecAnswer(id="images/000000.png#0", answer="")])
    base = ["eval", "rec", "--data", str(world.val), "--format", "qwen2vl"]
    assert main([*base, "--answers", str(partial)]) == 2
    assert "no answer for 3 of 4 items" in capsys.readouterr().err
    assert main([*base, "--split", "a", "--split", "b"]) == 2
    assert "one --split per data file" in capsys.readouterr().err
    assert main([*base, "--prompt", "Where is it?", "--answers", str(partial)]) == 2
    assert "{expression}" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.png", "expression": "x", "box": [5, 5, 1, 1]}\n')
    assert main(["eval", "rec", "--data", str(bad), "--format", "ferret"]) == 2
    assert "bad.jsonl:1: not a REC example (box" in capsys.readouterr().err
    assert main(["eval", "rec", "--data", str(world.val)]) == 2
    assert "give --format, or --model" in capsys.readouterr().err


def test_cli_format_choices_match_the_schema() -> None:
    from spr.eval.cli import FORMATS
    from spr.shared.schemas import GROUNDING_FORMATS

    assert FORMATS == GROUNDING_FORMATS
