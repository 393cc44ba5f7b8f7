"""The pipeline without Redis: `spr regions --out` -> `spr generator run --tasks --out` -> `spr scorer run`
-> `spr train --dataset pairs.jsonl`, each a real `spr` process on the tiny offline models (CPU).

SPR_REDIS_URL points at a port nothing listens on, so any stage that touched Redis would fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from spr.shared.schemas import CandidateGroup, PreferencePair

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "trainer" / "configs" / "tiny-cpu.yaml"
SPR = [sys.executable, "-m", "spr.cli.main"]


def _spr(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*SPR, *args], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"spr {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return done


@pytest.mark.slow
def test_generator_scorer_trainer_chain_through_files(tiny_models: Any, tmp_path: Path) -> None:
    env = {
        "SPR_REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there
        "SPR_DATA_ROOT": str(tmp_path / "data"),
        "SPR_GENERATOR_MODEL": str(tiny_models.qwen2vl),
        "SPR_GENERATOR_SAMPLES_PER_PROMPT": "2",
        "SPR_GENERATOR_MAX_NEW_TOKENS": "24",
        "SPR_GENERATOR_TORCH_THREADS": "1",
        "SPR_SCORER_SEMANTIC_MODEL": str(tiny_models.clip),
        "SPR_SCORER_LAMBDA": "0.8",
        "SPR_SCORER_MIN_MARGIN": "0",
    }
    _spr(["synth", "--out", "data", "--images", "4", "--seed", "3", "--size", "160x128"], env, tmp_path)
    _spr(["regions", "--annotations", "data/annotations.json", "--out", "tasks.jsonl"], env, tmp_path)
    tasks = (tmp_path / "tasks.jsonl").read_text().splitlines()
    assert len(tasks) == 4

    generated = _spr(
        ["generator", "run", "--tasks", "tasks.jsonl", "--out", "candidates.jsonl"], env, tmp_path
    )
    groups = [
        CandidateGroup.model_validate_json(x)
        for x in (tmp_path / "candidates.jsonl").read_text().splitlines()
    ]
    assert len(groups) == 4
    # not a terminal: plain progress lines, the last one complete
    assert (
        "generator: 0/4 tasks (0%)" in generated.stderr and "generator: 4/4 tasks (100%)" in generated.stderr
    )

    scored = _spr(
        ["scorer", "run", "--candidates", "candidates.jsonl", "--out", "pairs.jsonl"], env, tmp_path
    )
    pairs = [
        PreferencePair.model_validate_json(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()
    ]
    outcomes = [json.loads(x) for x in (tmp_path / "pairs.outcomes.jsonl").read_text().splitlines()]
    assert len(outcomes) == 4 and sum(o["outcome"] == "pair" for o in outcomes) == len(pairs) >= 1
    assert "scorer: 4/4 groups (100%)" in scored.stderr
    assert {p.task_id for p in pairs} <= {g.task.task_id for g in groups}

    argv = ["train", "--config", str(TINY_CONFIG), "--model", str(tiny_models.qwen2vl)]
    _spr([*argv, "--output_dir", "train", "--dataset", "pairs.jsonl"], env, tmp_path)
    summary = json.loads((tmp_path / "train" / "summary.json").read_text())
    rejected = sum((summary["spool"]["rejected"] or {}).values())
    assert summary["pairs_trained"] == len(pairs) - rejected >= 1
    assert summary["steps"] >= 1 and (tmp_path / "train" / "adapter").is_dir()

    # every stage resumes: a rerun of each does no work twice
    again = _spr(["scorer", "run", "--candidates", "candidates.jsonl", "--out", "pairs.jsonl"], env, tmp_path)
    assert "0 pairs written" in again.stdout and "4 already done" in again.stdout
    _spr([*argv, "--output_dir", "train", "--dataset", "pairs.jsonl"], env, tmp_path)
    rerun = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert rerun["rounds"] == [] and rerun["spool"]["added"] == 0
