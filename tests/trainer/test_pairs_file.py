"""`spr train --dataset pairs.jsonl`: the scorer's file-mode output imported into the run's spool."""

from __future__ import annotations

from pathlib import Path

import pytest
from spr.cli.main import main
from spr.trainer.pairs_file import PairsFileError, import_pairs_file, is_pairs_file, read_pairs_file
from spr.trainer.spool import Spool
from trainer_fixtures import TINY_CONFIG, MakePair


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_pairs_file_imports_into_the_spool_once(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    pairs = [pairs_factory(i) for i in range(3)]
    source = _write(tmp_path / "pairs.jsonl", [p.model_dump_json() for p in pairs] + [""])
    assert is_pairs_file(source) and not is_pairs_file(tmp_path)
    with Spool(tmp_path / "spool", data_root=data_root) as spool:
        assert import_pairs_file(source, spool) == {"added": 3}
        assert import_pairs_file(source, spool) == {"duplicate": 3}  # a rerun adds nothing
        assert [r.pair.pair_id for r in spool.records()] == [p.pair_id for p in pairs]
    # a pair appended to the file later is the only one added next time
    with source.open("a") as handle:
        handle.write(pairs_factory(3).model_dump_json() + "\n")
    with Spool(tmp_path / "spool", data_root=data_root) as spool:
        assert import_pairs_file(source, spool) == {"duplicate": 3, "added": 1}


def test_a_torn_last_line_is_skipped_and_a_bad_line_named(tmp_path: Path, pairs_factory: MakePair) -> None:
    good = pairs_factory(0).model_dump_json()
    torn = tmp_path / "torn.jsonl"
    torn.write_text(good + "\n" + good[:50])  # the writer died mid-line
    assert [p.pair_id for p in read_pairs_file(torn)] == [pairs_factory(0).pair_id]
    bad = _write(tmp_path / "bad.jsonl", [good, '{"pair_id": "x"}'])
    with pytest.raises(PairsFileError, match=r"bad\.jsonl:2: not a preference pair \(task_id"):
        read_pairs_file(bad)


def test_missing_images_stop_the_import_naming_the_fix(tmp_path: Path, pairs_factory: MakePair) -> None:
    source = _write(tmp_path / "pairs.jsonl", [pairs_factory(0).model_dump_json()])
    with (
        Spool(tmp_path / "spool", data_root=tmp_path) as spool,
        pytest.raises(PairsFileError, match=r"could not be stored .* SPR_DATA_ROOT"),
    ):
        import_pairs_file(source, spool)


def test_train_on_a_pairs_file_needs_the_data_root(
    tmp_path: Path,
    tiny_qwen2vl: Path,
    pairs_factory: MakePair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SPR_DATA_ROOT", raising=False)
    source = _write(tmp_path / "pairs.jsonl", [pairs_factory(0).model_dump_json()])
    argv = ["train", "--config", str(TINY_CONFIG), "--model", str(tiny_qwen2vl)]
    assert main([*argv, "--output-dir", str(tmp_path / "out"), "--dataset", str(source)]) == 2
    err = capsys.readouterr().err
    assert "pairs jsonl needs the data root" in err and "--data-root" in err
