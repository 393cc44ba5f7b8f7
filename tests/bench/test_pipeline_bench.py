"""bench/pipeline.py end to end at a tiny size: every task reaches the spool, every stage is reported."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "pipeline.py"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_pipeline_bench_reports_every_stage() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tasks", "3", "--samples", "1", "--max-new-tokens", "16"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("pairs spooled: ") and " of 3 tasks" in line for line in lines)
    rows = {
        line.split()[0]: line.split()
        for line in lines
        if line.split() and line.split()[0] in {"generator", "scorer", "spool"}
    }
    assert set(rows) == {"generator", "scorer", "spool"}
    assert rows["generator"][1] == "3" and rows["scorer"][1] == "3"
    assert any(line.startswith("workers per generator worker") for line in lines)
