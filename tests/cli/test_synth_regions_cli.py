"""`spr synth` then `spr regions`, to a jsonl file and onto a real private Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from spr.cli.main import main
from spr.shared.queue import STREAM_TASKS, Queue, QueueConfig
from spr.shared.schemas import RegionTask


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "shapes"
    assert main(["synth", "--out", str(out), "--images", "5", "--seed", "2", "--size", "160x128"]) == 0
    return out / "annotations.json"


def _summary(out: str) -> str:
    return out.strip().splitlines()[-1]


def _tasks(path: Path) -> list[RegionTask]:
    return [RegionTask.model_validate_json(line) for line in path.read_text().splitlines()]


def test_synth_prints_the_annotations_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--images", "2", "--size", "64x48"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "annotations.json")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png"]


def test_regions_to_jsonl(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tasks.jsonl"
    args = ["regions", "--annotations", str(dataset), "--out", str(out), "--regions-per-image", "2"]
    assert main(args) == 0
    tasks = _tasks(out)
    assert _summary(capsys.readouterr().out).startswith(
        f"images read: 5, skipped (< 5 objects): 0, regions written: {len(tasks)}, duplicates: 0"
    )
    assert 5 <= len(tasks) <= 10
    assert len({t.task_id for t in tasks}) == len(tasks)
    for task in tasks:
        assert (dataset.parent / task.image.path).is_file()  # relative to the data root
        assert task.source == "annotations"
        assert len(task.objects) >= 5
    first = out.read_bytes()
    assert main([*args, "--seed", "0"]) == 0
    assert out.read_bytes() == first  # reproducible (seed 0 is the default)
    assert main([*args, "--seed", "1"]) == 0
    assert out.read_bytes() != first


def test_regions_data_root_from_the_environment(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPR_DATA_ROOT", str(dataset.parent.parent))
    out = tmp_path / "tasks.jsonl"
    assert main(["regions", "--annotations", str(dataset), "--out", str(out)]) == 0
    tasks = _tasks(out)
    assert tasks and all(t.image.path.startswith("shapes/images/") for t in tasks)
    monkeypatch.setenv("SPR_DATA_ROOT", str(tmp_path / "elsewhere"))
    assert main(["regions", "--annotations", str(dataset), "--out", str(out)]) == 2


def test_regions_skips_small_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "few"
    assert (
        main(["synth", "--out", str(data), "--images", "3", "--min-objects", "3", "--max-objects", "4"]) == 0
    )
    out = tmp_path / "tasks.jsonl"
    assert main(["regions", "--annotations", str(data / "annotations.json"), "--out", str(out)]) == 0
    assert _summary(capsys.readouterr().out).startswith(
        "images read: 3, skipped (< 5 objects): 3, regions written: 0, duplicates: 0"
    )
    assert out.read_text() == ""


def test_regions_whole_image_covers_images_of_few_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "few"
    assert (
        main(["synth", "--out", str(data), "--images", "3", "--min-objects", "1", "--max-objects", "2"]) == 0
    )
    out = tmp_path / "tasks.jsonl"
    argv = ["regions", "--annotations", str(data / "annotations.json"), "--out", str(out)]
    assert main([*argv, "--min-objects", "1", "--whole-image"]) == 0
    assert "regions written: 3," in _summary(capsys.readouterr().out)
    tasks = [RegionTask.model_validate_json(line) for line in out.read_text().splitlines()]
    assert [t.region for t in tasks] == [(0.0, 0.0, 256.0, 256.0)] * 3
    assert all(1 <= len(t.objects) <= 2 for t in tasks)


def test_regions_publishes_to_redis_once(
    dataset: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["regions", "--annotations", str(dataset), "--redis-url", redis_url, "--regions-per-image", "2"]
    assert main(args) == 0
    first = _summary(capsys.readouterr().out)
    written = int(first.split("regions written: ")[1].split(",")[0])
    assert written >= 5
    queue = Queue.from_url(redis_url, QueueConfig(block_ms=0))
    try:
        deliveries = queue.consume(STREAM_TASKS, "generator", "g-1", count=100)
        tasks = [d.parse(RegionTask) for d in deliveries]
        assert sorted(d.item_id for d in deliveries) == sorted(t.task_id for t in tasks)
        assert len(tasks) == written
        # publishing the same regions again adds nothing: the ids are deterministic
        assert main(args) == 0
        assert "regions written: 0, duplicates: " + str(written) in capsys.readouterr().out
        assert queue.backlog(STREAM_TASKS) == written
    finally:
        queue.close()


def test_regions_bad_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert main(["regions", "--annotations", str(missing), "--out", str(tmp_path / "t.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == f"spr: error: annotations file not found: {missing}"
    dataset = tmp_path / "d" / "annotations.json"
    dataset.parent.mkdir()
    dataset.write_text('{"images": [], "annotations": [], "categories": []}')
    assert main(["regions", "--annotations", str(dataset), "--min-objects", "0", "--out", "x"]) == 2
    assert "min_objects must be >= 1" in capsys.readouterr().err


def test_synth_bad_size_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", "x", "--size", "256"])
    assert exit_info.value.code == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
