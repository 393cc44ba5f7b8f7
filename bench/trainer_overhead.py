"""DPO throughput of `spr train` on the tiny Qwen2-VL, and its overhead against bare TRL.

Same process, same pairs, same DPOConfig and LoRA config, alternating runs (medians over --repeats):

* bare: a ``datasets.Dataset`` built in memory -> ``trl.DPOTrainer(...).train()`` -> ``save_model``;
* ours: ``Spool.append_many`` (image resolution, length check with the processor, fsync) ->
  ``spr.trainer.train.run_training`` on that spool (round ledger, dataset from the spool, metric
  callback, checkpoint at the end for resume, adapter published, summary written).

Prints DPO steps/s and pairs/s of the training loop, end-to-end wall times, and the overhead of
spooling + wrapper over bare TRL (the aim is <= 5 %). Redis is not involved (the queue has its own
benchmark); CPU by default, ``--device cuda`` on a GPU machine.

    .venv/bin/python bench/trainer_overhead.py [--pairs 64] [--repeats 3] [--model DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from spr.shared.schemas import ImageRef, PairSide, PreferencePair, Provenance, Scores

BATCH = 2


def write_pairs(root: Path, count: int) -> list[PreferencePair]:
    """``count`` pairs over 8 synthetic images (two sizes) written under ``root``."""
    from PIL import Image, ImageDraw

    (root / "images").mkdir(parents=True, exist_ok=True)
    sizes = [(96, 80), (120, 96)]
    for index in range(8):
        width, height = sizes[index % 2]
        image = Image.new("RGB", (width, height), (30 * index % 255, 100, 150))
        ImageDraw.Draw(image).rectangle((4, 4, width // 2, height // 2), fill=(220, 40, 40))
        image.save(root / "images" / f"{index}.png")
    pairs = []
    box = "<|box_start|>(52,62),(500,500)<|box_end|>"
    for index in range(count):
        width, height = sizes[index % 8 % 2]
        task = f"bench-{index}"
        pairs.append(
            PreferencePair(
                pair_id=PreferencePair.make_id(task),
                task_id=task,
                image=ImageRef(path=f"images/{index % 8}.png", width=width, height=height),
                region=(0.0, 0.0, float(width), float(height)),
                objects=[],
                format="qwen2vl",
                prompt=f"Describe the region <|box_start|>(0,0),(999,999)<|box_end|> in detail. ({index})",
                chosen=PairSide(
                    candidate_id=f"{task}-a",
                    text=f"<|object_ref_start|>a red box<|object_ref_end|>{box} beside a blue area",
                    scores=Scores(semantic=0.3, localization=0.9, total=0.42),
                    refined=True,
                ),
                rejected=PairSide(
                    candidate_id=f"{task}-b",
                    text="a picture",
                    scores=Scores(semantic=0.1, localization=0.0, total=0.08),
                    refined=False,
                ),
                margin=0.34,
                provenance=Provenance(generator_model="tiny", scorer_settings_hash="bench"),
            )
        )
    return pairs


def dpo_args(output_dir: Path, device: str, *, save: bool) -> Any:
    from trl.trainer.dpo_config import DPOConfig

    return DPOConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH,
        num_train_epochs=1,
        learning_rate=1e-4,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        beta=0.1,
        max_length=1024,
        logging_steps=1,
        save_strategy="steps" if save else "no",
        save_steps=10_000,  # ours: only the end-of-training checkpoint (what resume needs at minimum)
        report_to=[],
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=device == "cpu",
        disable_tqdm=True,
        seed=0,
    )


def lora() -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",  # as spr train builds it
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    )


def run_bare(
    model: Path, pairs: list[PreferencePair], data_root: Path, out: Path, device: str
) -> dict[str, float]:
    from datasets import Dataset, Features
    from spr.trainer.dataset import REQUIRED_COLUMNS, features, trl_example
    from transformers import AutoProcessor
    from trl.trainer.dpo_trainer import DPOTrainer

    started, cpu_started = time.perf_counter(), time.process_time()
    # What a TRL user writes: the four columns TRL reads, images as file paths.
    rows: dict[str, list[Any]] = {name: [] for name in REQUIRED_COLUMNS}
    for pair in pairs:
        example = trl_example(pair, str(data_root / pair.image.path))
        for name in REQUIRED_COLUMNS:
            rows[name].append(example[name])
    dataset = Dataset.from_dict(
        rows, features=Features({name: features()[name] for name in REQUIRED_COLUMNS})
    )
    trainer = DPOTrainer(
        model=str(model),
        args=dpo_args(out, device, save=False),
        train_dataset=dataset,
        processing_class=AutoProcessor.from_pretrained(model),  # type: ignore[no-untyped-call]
        peft_config=lora(),
    )
    result = trainer.train()
    trainer.save_model(str(out / "adapter"))
    return {
        "total_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started,
        "train_s": float(result.metrics["train_runtime"]),
        "steps": trainer.state.global_step,
    }


def run_ours(
    model: Path, pairs: list[PreferencePair], data_root: Path, out: Path, device: str
) -> dict[str, float]:
    from spr.trainer.config import SprTrainConfig
    from spr.trainer.length import PairLengthMeasurer
    from spr.trainer.spool import Spool
    from spr.trainer.train import load_processor, run_training

    started, cpu_started = time.perf_counter(), time.process_time()
    with Spool(
        out / "spool",
        data_root=data_root,
        max_length=1024,
        measure=PairLengthMeasurer(load_processor(str(model))),
    ) as spool:
        spool.append_many(pairs)
    spooled = time.perf_counter()
    config = SprTrainConfig(
        model=str(model),
        dataset=str(out / "spool"),
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    summary = run_training(config, dpo_args(out, device, save=True))
    trained = summary.rounds[0]
    return {
        "total_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_started,
        "spool_s": spooled - started,
        "steps": trained.steps,
        "train_s": trained.train_runtime_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None, help="tiny Qwen2-VL folder (default: build one)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    with tempfile.TemporaryDirectory(prefix="spr-bench-train-") as tmp:
        root = Path(tmp)
        model = options.model
        if model is None:
            from spr.shared.tiny import build_tiny_models

            model = build_tiny_models(root / "models", seed=0).qwen2vl
        pairs = write_pairs(root / "data", options.pairs)
        run_bare(model, pairs[: BATCH * 2], root / "data", root / "warmup", options.device)  # imports, caches
        bare: list[dict[str, float]] = []
        ours: list[dict[str, float]] = []
        for repeat in range(options.repeats):
            bare.append(run_bare(model, pairs, root / "data", root / f"bare-{repeat}", options.device))
            ours.append(run_ours(model, pairs, root / "data", root / f"ours-{repeat}", options.device))

    steps = int(bare[0]["steps"])
    assert all(int(run["steps"]) == steps for run in bare + ours), (
        "bare and ours trained different step counts"
    )
    print(f"pairs: {options.pairs}, batch {BATCH}, steps per run: {steps}, repeats: {options.repeats}")
    print(f"device: {options.device}, torch threads: {_threads()}, host CPUs: {os.cpu_count()}")
    # On a shared machine wall times swing with other load: the fastest run is the best estimate of the
    # intrinsic cost, CPU time (all threads of this process) the least disturbed one; both are shown.
    for name, runs in (("bare TRL", bare), ("spr train", ours)):
        train_s = _best(runs, "train_s")
        print(
            f"{name:10s} training loop (best): {steps / train_s:6.2f} DPO steps/s, "
            f"{steps * BATCH / train_s:6.2f} pairs/s | end to end: best {_best(runs, 'total_s'):6.2f} s, "
            f"median {_median(runs, 'total_s'):6.2f} s, CPU median {_median(runs, 'cpu_s'):6.2f} s"
        )
    spool_s = _best(ours, "spool_s")
    print(
        f"spooling (best): {spool_s:.3f} s for {options.pairs} pairs "
        f"({options.pairs / spool_s:.1f} pairs/s, incl. the processor length check and fsync)"
    )
    for label, key, pick in (
        ("end to end, best wall", "total_s", _best),
        ("end to end, median CPU", "cpu_s", _median),
        ("training loop, best wall", "train_s", _best),
    ):
        overhead = pick(ours, key) / pick(bare, key) - 1
        print(f"overhead of spooling + wrapper, {label}: {100 * overhead:+.1f} %  (aim <= 5 %)")
    # Each repeat runs bare then ours back to back: their ratio cancels slow drifts of the machine's load.
    paired = statistics.median(o["total_s"] / b["total_s"] - 1 for b, o in zip(bare, ours, strict=True))
    print(f"overhead of spooling + wrapper, end to end, median of paired runs: {100 * paired:+.1f} %")


def _best(runs: list[dict[str, float]], key: str) -> float:
    return min(run[key] for run in runs)


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__":
    main()
