"""An operator's mistakes end in one line naming the setting and the fix, exit code 2, no traceback:
a malformed SPR_REDIS_URL, an output folder that cannot be written, and a model folder of the wrong
kind (the CLIP as the policy, the policy as the CLIP). Each case runs the real `spr` command in its own
process, the way an operator would meet them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SPR = str(Path(sys.executable).parent / "spr")
ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "trainer" / "configs" / "tiny-cpu.yaml"

# case id -> (argv after `spr`, extra environment, words the one line must hold)
Case = tuple[list[str], dict[str, str], list[str]]


def _cases(models: Any, tmp: Path) -> dict[str, Case]:
    blocker = tmp / "a-file"  # a path under a regular file cannot be created, even by root
    blocker.write_text("")
    tasks = tmp / "tasks.jsonl"
    tasks.write_text("")
    qwen, clip = str(models.qwen2vl), str(models.clip)
    bad_url = {"SPR_REDIS_URL": "localhost:6379"}
    scorer = {"SPR_SCORER_SEMANTIC_MODEL": "none", "SPR_SCORER_AUTH": "none"}
    return {
        # malformed SPR_REDIS_URL
        "redis-queue-status": (["queue", "status"], bad_url, ["SPR_REDIS_URL", "redis://"]),
        "redis-regions": (["regions", "--annotations", str(tasks)], bad_url, ["SPR_REDIS_URL", "redis://"]),
        "redis-generator": (
            ["generator", "run"],
            {**bad_url, "SPR_GENERATOR_MODEL": qwen},
            ["SPR_REDIS_URL", "redis://"],
        ),
        "redis-scorer-worker": (["scorer", "worker"], {**bad_url, **scorer}, ["SPR_REDIS_URL", "redis://"]),
        "redis-train": (
            ["train", "--config", str(TINY_CONFIG), "--from-queue"],
            bad_url,
            ["SPR_REDIS_URL", "redis://"],
        ),
        # an output folder that cannot be written
        "unwritable-train": (
            ["train", "--config", str(TINY_CONFIG), "--model", qwen, "--output-dir", str(blocker / "out")],
            {},
            ["--output-dir", "SPR_TRAINER_OUTPUT_DIR", "cannot be written", "chown 1000:1000"],
        ),
        "unwritable-synth": (
            ["synth", "--out", str(blocker / "data"), "--images", "1"],
            {},
            ["--out", "cannot be written"],
        ),
        "unwritable-generator": (
            ["generator", "run", "--tasks", str(tasks), "--out", str(blocker / "groups.jsonl")],
            {"SPR_GENERATOR_MODEL": qwen},
            ["--out", "cannot be written"],
        ),
        # a model folder of the wrong kind
        "clip-as-generator-policy": (
            ["generator", "run", "--tasks", str(tasks), "--out", str(tmp / "groups.jsonl")],
            {"SPR_GENERATOR_MODEL": clip},
            ["SPR_GENERATOR_MODEL", "'clip'", "not a vision-language policy", "SPR_SCORER_SEMANTIC_MODEL"],
        ),
        "clip-as-trainer-policy": (
            ["train", "--config", str(TINY_CONFIG), "--model", clip, "--output-dir", str(tmp / "train")],
            {},
            ["--model", "SPR_TRAINER_MODEL", "not a vision-language policy"],
        ),
        "clip-as-eval-policy": (
            ["eval", "rec", "--data", str(tasks), "--model", clip],
            {},
            ["--model", "not a vision-language policy"],
        ),
        "policy-as-scorer-clip": (
            ["scorer", "serve"],
            {**scorer, "SPR_SCORER_SEMANTIC_MODEL": qwen},
            ["SPR_SCORER_SEMANTIC_MODEL", "'qwen2_vl'", "not a CLIP", "SPR_GENERATOR_MODEL"],
        ),
    }


# `spr train` and `spr eval` import TRL / torch before they can judge these settings: the slow lane.
SLOW = {"unwritable-train", "clip-as-trainer-policy", "clip-as-eval-policy"}
CASES = [
    "redis-queue-status",
    "redis-regions",
    "redis-generator",
    "redis-scorer-worker",
    "redis-train",
    "unwritable-train",
    "unwritable-synth",
    "unwritable-generator",
    "clip-as-generator-policy",
    "clip-as-trainer-policy",
    "clip-as-eval-policy",
    "policy-as-scorer-clip",
]


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in CASES]
)
def test_one_line_naming_the_setting_and_the_fix(name: str, tiny_models: Any, tmp_path: Path) -> None:
    argv, env, words = _cases(tiny_models, tmp_path)[name]
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPR_")}
    result = subprocess.run(
        [SPR, *argv],
        env={**base, "SPR_DATA_ROOT": str(tmp_path), **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, (argv, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("spr: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])


def test_every_case_is_checked(tiny_models: Any, tmp_path: Path) -> None:
    assert sorted(_cases(tiny_models, tmp_path)) == sorted(CASES)
