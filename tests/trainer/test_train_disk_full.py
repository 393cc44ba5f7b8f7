"""`spr train` whose checkpoints fill a real (small tmpfs) disk: one clear error, and a rerun resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from spr.cli.main import main
from spr.trainer.spool import Spool
from trainer_fixtures import TINY_CONFIG, MakePair

PAIRS = 8  # batch 2 -> 4 steps; a checkpoint (~0.5 MB) after each


@pytest.mark.faults
def test_full_disk_while_checkpointing_names_the_folder_and_a_rerun_resumes(
    tmp_path: Path,
    tiny_qwen2vl: Path,
    data_root: Path,
    pairs_factory: MakePair,
    small_disk: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spool_dir = tmp_path / "spool"
    with Spool(spool_dir, data_root=data_root) as spool:
        spool.append_many([pairs_factory(i) for i in range(PAIRS)])
    output_dir = small_disk(800) / "out"  # room for one checkpoint, not two
    argv = ["train", "--config", str(TINY_CONFIG), "--model", str(tiny_qwen2vl), "--dataset", str(spool_dir)]
    argv += ["--save_steps", "1", "--save_total_limit", "3", "--disable_tqdm", "true"]

    assert main([*argv, "--output_dir", str(output_dir)]) != 0
    err = capsys.readouterr().err
    assert f"cannot write round 0 checkpoints to {output_dir / 'round-000'}: its disk is full" in err
    assert "MiB free of 0.8 MiB" in err
    assert "round 0 resumes from its last complete checkpoint" in err
    assert "Traceback" not in err

    # The operator moves the output to a larger disk, as the message says: the run resumes there.
    larger = tmp_path / "out"
    shutil.copytree(output_dir, larger)
    assert main([*argv, "--output_dir", str(larger)]) == 0
    summary = json.loads((larger / "summary.json").read_text())
    [round_report] = summary["rounds"]
    assert round_report["resumed_from"] == "checkpoint-1"
    assert round_report["steps"] == PAIRS // 2
