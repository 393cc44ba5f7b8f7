"""The `spr train` / `spr pairs export` command lines: help, and clear one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from spr.cli.main import main


def test_train_help_lists_our_fields_and_trls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0  # the short help: ours and TRL's common fields
    out = capsys.readouterr().out
    for flag in (
        "--config",
        "--from-queue",
        "--dataset",
        "--round-size",
        "--lora-r",
        "--beta",
        "--max-length",
    ):
        assert flag in out, flag


def test_train_errors_are_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--use-cpu", "true", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "spr: error: model folder" in err and "does not exist" in err
    assert main(["train", "--use-cpu", "true", "--model", str(tmp_path), "--from-queue"]) == 2
    assert "--from-queue needs a stop condition" in capsys.readouterr().err


def test_export_refuses_a_folder_that_is_not_a_spool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pairs", "export", "--spool", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a spool folder" in capsys.readouterr().err
