"""`spr train` end to end on the tiny Qwen2-VL (CPU) and a real Redis: pull, DPO, adapter, rounds, export."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import redis
from spr.cli.main import main
from spr.shared.queue import GROUP_TRAINERS as TRAINER_GROUP
from spr.shared.queue import STREAM_PAIRS, Queue, QueueConfig
from spr.shared.schemas import PreferencePair
from spr.trainer.export import ExportError, export_spool
from trainer_fixtures import TINY_CONFIG, MakePair

PAIRS = 8  # batch 2 (tiny-cpu.yaml) -> 4 DPO steps per epoch
MAX_LENGTH = 256


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def _publish(url: str, pairs: list[PreferencePair]) -> None:
    with Queue.from_url(url, QueueConfig()) as queue:
        for pair in pairs:
            assert queue.publish(STREAM_PAIRS, pair.pair_id, pair)


def _train(model: Path, output_dir: Path, *extra: str) -> dict[str, Any]:
    argv = ["train", "--config", str(TINY_CONFIG), "--model", str(model), "--output-dir", str(output_dir)]
    assert main([*argv, *extra]) == 0
    summary: dict[str, Any] = json.loads((output_dir / "summary.json").read_text())
    return summary


def _queue_args(url: str, data_root: Path) -> list[str]:
    return [
        "--from-queue",
        "--until-empty",
        "--redis-url",
        url,
        "--data-root",
        str(data_root),
        "--max-length",
        str(MAX_LENGTH),
        "--visibility-timeout-s",
        "1",
    ]


@pytest.fixture(scope="module")
def trained(
    redis_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_qwen2vl: Path,
    data_root: Path,
    pairs_factory: MakePair,
) -> tuple[Path, dict[str, Any]]:
    """One `spr train --from-queue --until-empty` run on 8 good pairs + 1 over-long one."""
    _flush(redis_server)
    too_long = pairs_factory(99, chosen="a very long grounded description " * 50)
    _publish(redis_server, [pairs_factory(i) for i in range(PAIRS)] + [too_long])
    output_dir = tmp_path_factory.mktemp("train") / "out"
    return output_dir, _train(tiny_qwen2vl, output_dir, *_queue_args(redis_server, data_root))


def test_pairs_are_pulled_spooled_and_acked(trained: tuple[Path, dict[str, Any]], redis_server: str) -> None:
    _, summary = trained
    assert summary["spool"]["pairs"] == PAIRS
    assert summary["spool"]["rejected"] == {"too_long": 1}
    assert summary["pull"]["stopped"] == "drained"
    assert summary["pull"]["acked"] == PAIRS + 1
    with Queue.from_url(redis_server) as queue:
        group = next(g for g in queue.status([STREAM_PAIRS]).streams[0].groups if g.name == TRAINER_GROUP)
    assert (group.pending, group.lag) == (0, 0)


def test_dpo_steps_run_with_finite_loss_and_dpo_metrics(trained: tuple[Path, dict[str, Any]]) -> None:
    _, summary = trained
    assert summary["pairs_trained"] == PAIRS
    assert summary["steps"] == PAIRS // 2
    [round_report] = summary["rounds"]
    assert (round_report["start"], round_report["end"], round_report["resumed_from"]) == (0, PAIRS, None)
    metrics = summary["final_metrics"]
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert math.isfinite(metrics[key]), key
    # means over every logged step (logging_steps 1: each of the 4 steps), not the last batch alone
    assert summary["logged_steps"] == round_report["logged_steps"] == PAIRS // 2
    means = summary["mean_metrics"]
    assert 0.0 <= means["rewards/accuracies"] <= 1.0 and math.isfinite(means["rewards/margins"])
    assert means == round_report["mean_metrics"]
    assert summary["wall_time_s"] > 0


def test_adapter_weights_changed_from_their_initialisation(trained: tuple[Path, dict[str, Any]]) -> None:
    from safetensors.torch import load_file

    output_dir, _ = trained
    weights = load_file(str(output_dir / "adapter" / "adapter_model.safetensors"))
    lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
    assert lora_b, sorted(weights)[:5]
    # peft initialises every lora_B to zero: any non-zero entry was put there by DPO updates.
    assert all(tensor.abs().sum() > 0 for tensor in lora_b)
    config = json.loads((output_dir / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 16)


def test_saved_adapter_reloads_on_the_base_and_generates(
    trained: tuple[Path, dict[str, Any]], tiny_qwen2vl: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    import torch
    from peft import PeftModel
    from spr.trainer.dataset import prompt_messages
    from spr.trainer.length import open_image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    output_dir, _ = trained
    # The processor was saved beside the adapter.
    processor = AutoProcessor.from_pretrained(output_dir / "adapter")  # type: ignore[no-untyped-call]
    base = AutoModelForImageTextToText.from_pretrained(tiny_qwen2vl)
    model = PeftModel.from_pretrained(base, str(output_dir / "adapter")).eval()
    pair = pairs_factory(0)
    text = processor.apply_chat_template(prompt_messages(pair.prompt), add_generation_prompt=True)
    inputs = processor(text=[text], images=[open_image(data_root / pair.image.path)], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)  # type: ignore[no-untyped-call]
        tuned = model(**inputs).logits
        with model.disable_adapter():
            reference = model(**inputs).logits
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    assert not torch.allclose(tuned, reference)  # the adapter is live


def test_rerun_without_new_pairs_trains_nothing_and_new_pairs_train_as_the_next_round(
    trained: tuple[Path, dict[str, Any]],
    redis_server: str,
    tiny_qwen2vl: Path,
    data_root: Path,
    pairs_factory: MakePair,
) -> None:
    output_dir, _ = trained
    again = _train(tiny_qwen2vl, output_dir, *_queue_args(redis_server, data_root))
    assert (again["rounds"], again["rounds_done_before"], again["steps"]) == ([], 1, 0)
    _publish(redis_server, [pairs_factory(i) for i in range(PAIRS, PAIRS + 4)])
    more = _train(tiny_qwen2vl, output_dir, *_queue_args(redis_server, data_root))
    [round_report] = more["rounds"]
    assert (round_report["index"], round_report["start"], round_report["end"]) == (1, PAIRS, PAIRS + 4)
    assert round_report["steps"] == 2
    assert more["spool"]["pairs"] == PAIRS + 4
    assert Path(more["adapter_dir"]) == output_dir / "adapter"
    assert (output_dir / "round-001" / "adapter" / "adapter_model.safetensors").is_file()


def test_rounds_train_while_pulling_goes_on(
    redis_url: str, tmp_path: Path, tiny_qwen2vl: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    _publish(redis_url, [pairs_factory(i) for i in range(6)])
    summary = _train(tiny_qwen2vl, tmp_path / "out", *_queue_args(redis_url, data_root), "--round-size", "4")
    assert [(r["start"], r["end"]) for r in summary["rounds"]] == [(0, 4), (4, 6)]
    assert summary["pairs_trained"] == 6
    assert summary["steps"] == 2 + 1


def test_export_round_trips_into_train_dataset_and_merges(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path, tiny_qwen2vl: Path
) -> None:
    from datasets import load_from_disk
    from spr.trainer.spool import Spool

    output_dir, _ = trained
    spool_dir = output_dir / "spool"
    exported = tmp_path / "export"
    assert main(["pairs", "export", "--spool", str(spool_dir), "--out", str(exported)]) == 0
    dataset = load_from_disk(str(exported))
    records = Spool(spool_dir, readonly=True).records()
    assert dataset["pair_id"] == [r.pair.pair_id for r in records]
    row = dataset[0]
    assert row["prompt"][0]["content"][1]["text"] == records[0].pair.prompt
    assert row["chosen"][0]["content"][0]["text"] == records[0].pair.chosen.text
    assert row["rejected"][0]["content"][0]["text"] == records[0].pair.rejected.text
    assert row["images"][0].size == (records[0].pair.image.width, records[0].pair.image.height)
    # Image bytes are embedded: the export does not depend on the data root any more.
    assert dataset.data.column("images")[0][0]["bytes"].as_py()
    with pytest.raises(ExportError, match="not empty"):
        export_spool(spool_dir, exported)

    summary = _train(tiny_qwen2vl, tmp_path / "from-export", "--dataset", str(exported), "--merge-adapter")
    assert summary["source"] == f"dataset:{exported.resolve()}"
    assert summary["pairs_trained"] == len(dataset)
    assert summary["merged_dir"] == str(tmp_path / "from-export" / "merged")
    _assert_merged_matches_adapter(tmp_path / "from-export", tiny_qwen2vl)


def _assert_merged_matches_adapter(output_dir: Path, base_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    merged = AutoModelForImageTextToText.from_pretrained(output_dir / "merged")  # loads in eval mode
    base = AutoModelForImageTextToText.from_pretrained(base_dir)
    adapted = PeftModel.from_pretrained(base, str(output_dir / "adapter"))
    adapted.eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        merged_logits = merged(input_ids=ids).logits
        adapted_logits = adapted(input_ids=ids).logits
        with adapted.disable_adapter():
            base_logits = adapted(input_ids=ids).logits
    assert torch.allclose(merged_logits, adapted_logits, atol=1e-4)
    assert not torch.allclose(merged_logits, base_logits)
