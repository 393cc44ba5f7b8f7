"""A full disk while writing checkpoints is one clear error (on a real, small tmpfs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from spr.trainer.disk import CheckpointWriteError, checkpoint_writes


def test_a_write_on_a_full_disk_names_the_folder_and_the_free_space(small_disk: Any) -> None:
    folder: Path = small_disk(64) / "round-000"
    writes = checkpoint_writes(folder, "round 0 checkpoints", resume_hint="it resumes")
    with pytest.raises(CheckpointWriteError) as caught, writes:
        folder.mkdir()
        (folder / "weights.bin").write_bytes(b"\0" * (256 * 1024))
    message = str(caught.value)
    assert (
        f"cannot write round 0 checkpoints to {folder}: its disk is full (0.0 MiB free of 0.1 MiB)" in message
    )
    assert "--output-dir on a larger disk" in message and "it resumes" in message
    assert "No space left on device" in message


def test_other_errors_pass_through_unchanged(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="a bug"),
        checkpoint_writes(tmp_path, "checkpoints", resume_hint="-"),
    ):
        raise RuntimeError("a bug")
