"""Kill `spr train` after its first checkpoint, run the same command again: it resumes, steps add up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from spr.trainer.spool import Spool
from trainer_fixtures import TINY_CONFIG, MakePair

PAIRS = 24  # batch 2 -> 12 steps, a checkpoint after each
STEPS = PAIRS // 2


def _command(model: Path, spool_dir: Path, output_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spr.cli.main",
        "train",
        "--config",
        str(TINY_CONFIG),
        "--model",
        str(model),
        "--dataset",
        str(spool_dir),
        "--output-dir",
        str(output_dir),
        "--save-steps",
        "1",
        "--save-total-limit",
        "3",
        "--disable_tqdm",
        "true",
    ]


def _wait_for(path: Path, proc: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"trainer exited ({proc.returncode}) before writing {path}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {path} within {deadline_s} s")
        time.sleep(0.02)  # polling for the checkpoint file, with a deadline


def test_killed_training_resumes_from_its_checkpoint_and_trains_each_step_once(
    tmp_path: Path, tiny_qwen2vl: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    spool_dir = tmp_path / "spool"
    with Spool(spool_dir, data_root=data_root) as spool:
        spool.append_many([pairs_factory(i) for i in range(PAIRS)])
    output_dir = tmp_path / "out"
    command = _command(tiny_qwen2vl, spool_dir, output_dir)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    _wait_for(output_dir / "round-000" / "checkpoint-1" / "trainer_state.json", first, deadline_s=300)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert not (output_dir / "summary.json").exists(), "the first run finished before it was killed"

    second = subprocess.run(command, capture_output=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    summary = json.loads((output_dir / "summary.json").read_text())
    [round_report] = summary["rounds"]
    resumed_step = int(round_report["resumed_from"].removeprefix("checkpoint-"))
    assert 1 <= resumed_step < STEPS
    assert round_report["steps"] == STEPS  # as many as one uninterrupted epoch
    assert round_report["steps_this_run"] == STEPS - resumed_step
    final_state = json.loads(
        (output_dir / "round-000" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text()
    )
    logged_steps = [entry["step"] for entry in final_state["log_history"] if "loss" in entry]
    assert logged_steps == list(range(1, STEPS + 1))  # every step once: none lost, none repeated
    assert final_state["epoch"] == pytest.approx(1.0)
    assert (output_dir / "adapter" / "adapter_model.safetensors").is_file()
