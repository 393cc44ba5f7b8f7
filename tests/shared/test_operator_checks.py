"""spr.shared.operator_checks: Redis URLs, writable folders, model folders of the right kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from spr.shared.operator_checks import (
    OperatorError,
    check_model_folder,
    check_redis_url,
    check_writable_file,
    check_writable_folder,
    redis_url_problem,
)


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "redis://:pw@redis:6379", "rediss://h/2", "unix:///run/redis.sock"]
)
def test_redis_urls_that_work(url: str) -> None:
    assert redis_url_problem(url) is None
    assert check_redis_url(url, "SPR_REDIS_URL") == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", "must start with redis://"),
        ("http://localhost:6379", "must start with redis://"),
        ("redis://host:port/0", "cannot be parsed"),
        ("redis:///0", "names no host"),
        ("redis://localhost:6379/zero", "must be a number"),
        ("unix://", "names no socket path"),
    ],
)
def test_malformed_redis_urls_name_the_setting(url: str, problem: str) -> None:
    with pytest.raises(OperatorError, match=problem) as caught:
        check_redis_url(url, "SPR_REDIS_URL")
    assert str(caught.value).startswith(f"SPR_REDIS_URL {url!r} is not a Redis URL")


def test_a_writable_folder_is_created(tmp_path: Path) -> None:
    folder = check_writable_folder(tmp_path / "a" / "b", "--out")
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe file is gone


def test_a_folder_under_a_file_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OperatorError, match=r"--out=.*cannot be written \(Not a directory\)"):
        check_writable_folder(tmp_path / "file" / "out", "--out")
    with pytest.raises(OperatorError, match="it is a file, not a folder"):
        check_writable_folder(tmp_path / "file", "--out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through folder permissions")
def test_a_read_only_folder_cannot_be_written(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(OperatorError, match="Permission denied"):
        check_writable_folder(folder, "SPR_TRAINER_OUTPUT_DIR")


def test_a_file_target_must_not_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(OperatorError, match="is a folder: give a file path"):
        check_writable_file(tmp_path, "--out")
    assert check_writable_file(tmp_path / "new" / "x.jsonl", "--out").parent.is_dir()


def _model(tmp_path: Path, name: str, config: dict[str, object] | None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_model_kinds(tmp_path: Path) -> None:
    clip = _model(tmp_path, "clip", {"model_type": "clip"})
    qwen = _model(tmp_path, "qwen", {"model_type": "qwen2_vl"})
    assert check_model_folder(clip, "SPR_SCORER_SEMANTIC_MODEL", "clip") == clip
    assert check_model_folder(qwen, "SPR_GENERATOR_MODEL", "policy") == qwen
    with pytest.raises(OperatorError, match=r"SPR_GENERATOR_MODEL=.*'clip' model, not a vision-language"):
        check_model_folder(clip, "SPR_GENERATOR_MODEL", "policy")
    with pytest.raises(OperatorError, match=r"SPR_SCORER_SEMANTIC_MODEL=.*'qwen2_vl' model, not a CLIP"):
        check_model_folder(qwen, "SPR_SCORER_SEMANTIC_MODEL", "clip")


def test_model_folders_that_are_not_model_folders(tmp_path: Path) -> None:
    with pytest.raises(OperatorError, match="is not a folder"):
        check_model_folder(tmp_path / "missing", "--model", "policy")
    with pytest.raises(OperatorError, match=r"has no config\.json"):
        check_model_folder(_model(tmp_path, "empty", None), "--model", "policy")
    # A policy config without model_type is left to the loader; a CLIP must say it is one.
    odd = _model(tmp_path, "odd", {"architectures": ["X"]})
    assert check_model_folder(odd, "--model", "policy") == odd
    with pytest.raises(OperatorError, match=r"config\.json names no model_type"):
        check_model_folder(odd, "SPR_SCORER_SEMANTIC_MODEL", "clip")
