"""The spool: durable, ordered, de-duplicating, crash-repairing, rejecting before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spr.shared.schemas import PreferencePair
from spr.trainer.spool import (
    REJECTS_FILE,
    Spool,
    SpoolCorruptError,
    SpoolError,
    UnreadableImage,
    is_spool,
)
from trainer_fixtures import MakePair, make_pair


def _length_by_text(pair: PreferencePair, image: Path) -> int:
    # A stand-in for the processor count (tested with the real processor in test_length.py).
    assert image.is_file()
    return len(pair.prompt) + max(len(pair.chosen.text), len(pair.rejected.text))


def test_appended_pairs_survive_reopen_in_order(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    pairs = [pairs_factory(i) for i in range(5)]
    with Spool(tmp_path / "spool", data_root=data_root) as spool:
        results = spool.append_many(pairs)
        assert [r.status for r in results] == ["added"] * 5
    reopened = Spool(tmp_path / "spool", readonly=True)
    records = reopened.records()
    assert [r.pair for r in records] == pairs
    assert [r.seq for r in records] == list(range(5))
    assert Path(records[0].image_file).is_absolute()
    assert records[0].image_path(reopened.directory) == (data_root / "images/img-000.png").resolve()
    assert is_spool(tmp_path / "spool")


def test_duplicates_are_dropped_within_a_batch_and_across_reopen(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        first = spool.append_many([pairs_factory(0), pairs_factory(1), pairs_factory(0)])
        assert [r.status for r in first] == ["added", "added", "duplicate"]
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        again = spool.append_many([pairs_factory(1), pairs_factory(2)])
        assert [r.status for r in again] == ["duplicate", "added"]
        assert len(spool) == 3
        stats = spool.stats()
        assert (stats.pairs, stats.added, stats.duplicates) == (3, 1, 1)


def test_over_long_pairs_are_rejected_with_a_reason_and_stay_rejected(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    long_pair = pairs_factory(7, chosen="word " * 200)
    with Spool(tmp_path / "s", data_root=data_root, max_length=300, measure=_length_by_text) as spool:
        results = spool.append_many([pairs_factory(0), long_pair])
        assert results[0].status == "added"
        assert results[1].status == "rejected"
        assert results[1].reason == "too_long"
        assert results[1].tokens is not None and results[1].tokens > 300
        assert spool.stats().rejected == {"too_long": 1}
        # Redelivered: a duplicate now, not a second reject record.
        assert spool.append(long_pair).status == "duplicate"
    rejects = [json.loads(line) for line in (tmp_path / "s" / REJECTS_FILE).read_text().splitlines()]
    assert [(r["pair_id"], r["reason"]) for r in rejects] == [(long_pair.pair_id, "too_long")]
    assert rejects[0]["pair"]["chosen"]["text"] == long_pair.chosen.text  # kept for a later replay
    reopened = Spool(tmp_path / "s", readonly=True)
    assert len(reopened) == 1
    assert reopened.stats().rejected == {"too_long": 1}
    assert long_pair.pair_id in reopened


def test_missing_image_fails_without_storing_and_escaping_path_is_rejected(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    missing = pairs_factory(0).model_copy(
        update={"image": pairs_factory(0).image.model_copy(update={"path": "nope.png"})}
    )
    escaping = pairs_factory(1).model_copy(
        update={"image": pairs_factory(1).image.model_copy(update={"path": "../outside.png"})}
    )
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        failed, rejected = spool.append_many([missing, escaping])
        assert failed.status == "failed"
        assert failed.reason is not None and "not found" in failed.reason
        assert rejected.status == "rejected" and rejected.reason == "image_outside_data_root"
        assert len(spool) == 0
        # A failed pair is not recorded: once its image appears it is accepted.
        assert missing.pair_id not in spool


def test_unreadable_image_is_rejected(tmp_path: Path, data_root: Path, pairs_factory: MakePair) -> None:
    def unreadable(pair: PreferencePair, image: Path) -> int:
        raise UnreadableImage(f"cannot decode image {image}")

    with Spool(tmp_path / "s", data_root=data_root, max_length=10, measure=unreadable) as spool:
        result = spool.append(pairs_factory(0))
    assert (result.status, result.reason) == ("rejected", "image_unreadable")


def test_torn_final_line_is_cut_off_on_open(tmp_path: Path, data_root: Path, pairs_factory: MakePair) -> None:
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        spool.append_many([pairs_factory(i) for i in range(3)])
    shard = tmp_path / "s" / "pairs-000000.jsonl"
    intact = shard.read_bytes()
    shard.write_bytes(intact + b'{"seq":3,"pair_id":"p-torn","ima')  # a crash mid-write
    readonly = Spool(tmp_path / "s", readonly=True)  # a reader ignores the tail, leaves the file alone
    assert len(readonly) == 3
    assert shard.read_bytes() != intact
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        assert len(spool) == 3
        assert shard.read_bytes() == intact  # the writer repaired it
        assert spool.append(pairs_factory(3)).status == "added"
    assert [r.seq for r in Spool(tmp_path / "s", readonly=True).records()] == [0, 1, 2, 3]


def test_damaged_line_before_intact_ones_is_corruption(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        spool.append_many([pairs_factory(i) for i in range(3)])
    shard = tmp_path / "s" / "pairs-000000.jsonl"
    lines = shard.read_bytes().split(b"\n")
    lines[1] = lines[1][:20]
    shard.write_bytes(b"\n".join(lines))
    with pytest.raises(SpoolCorruptError, match="line 2"):
        Spool(tmp_path / "s", data_root=data_root)


def test_shards_rotate_and_ranges_read_across_them(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    pairs = [pairs_factory(i) for i in range(7)]
    with Spool(tmp_path / "s", data_root=data_root, shard_size=3) as spool:
        spool.append_many(pairs[:4])
        spool.append_many(pairs[4:])
        assert [r.pair.pair_id for r in spool.records(2, 6)] == [p.pair_id for p in pairs[2:6]]
    assert sorted(p.name for p in (tmp_path / "s").glob("pairs-*.jsonl")) == [
        "pairs-000000.jsonl",
        "pairs-000001.jsonl",
        "pairs-000002.jsonl",
    ]
    assert len(Spool(tmp_path / "s", data_root=data_root)) == 7  # shard size kept in spool.json


def test_copy_images_makes_the_spool_self_contained(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    with Spool(tmp_path / "s", data_root=data_root, copy_images=True) as spool:
        spool.append_many([pairs_factory(0), pairs_factory(4)])  # the same image twice
        records = spool.records()
    assert records[0].image_file == "images/images/img-000.png"  # images/ + the path under the data root
    copied = records[0].image_path(tmp_path / "s")
    assert copied.read_bytes() == (data_root / "images/img-000.png").read_bytes()
    assert not list((tmp_path / "s" / "images").glob(".*partial"))


def test_second_writer_is_refused_and_bad_folders_are_named(tmp_path: Path, data_root: Path) -> None:
    with Spool(tmp_path / "s", data_root=data_root), pytest.raises(SpoolError, match="another process"):
        Spool(tmp_path / "s", data_root=data_root)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(SpoolError, match="not a spool"):
        Spool(tmp_path / "other", data_root=data_root)
    with Spool(tmp_path / "s2") as spool, pytest.raises(SpoolError, match="SPR_DATA_ROOT"):
        spool.append_many([])  # nothing to do is fine ...
        pair: PreferencePair = make_pair(0, "images/img-000.png")
        spool.append(pair)  # ... a pair needs the data root


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"seq": 1, "image_file": "x", "pair": {}}', "field 'pair_id' should be a str, is missing"),
        (
            b'{"seq": "1", "pair_id": "p", "image_file": "x", "pair": {}}',
            "field 'seq' should be a int, is a str",
        ),
    ],
)
def test_a_line_that_is_json_but_not_a_spool_row_names_file_and_line(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair, line: bytes, problem: str
) -> None:
    with Spool(tmp_path / "s", data_root=data_root) as spool:
        spool.append_many([pairs_factory(i) for i in range(3)])
    shard = tmp_path / "s" / "pairs-000000.jsonl"
    lines = shard.read_bytes().split(b"\n")
    lines[1] = line
    shard.write_bytes(b"\n".join(lines))
    for readonly in (False, True):
        with pytest.raises(SpoolCorruptError) as caught:
            Spool(tmp_path / "s", data_root=data_root, readonly=readonly)
        message = str(caught.value)
        assert f"spool file {shard}, line 2: {problem}" in message
        assert "restore pairs-000000.jsonl from a backup" in message and "--spool-dir" in message


def test_a_row_whose_pair_is_invalid_names_file_and_line_when_read(
    tmp_path: Path, data_root: Path, pairs_factory: MakePair
) -> None:
    import json

    with Spool(tmp_path / "s", data_root=data_root) as spool:
        spool.append_many([pairs_factory(i) for i in range(3)])
    shard = tmp_path / "s" / "pairs-000000.jsonl"
    rows = [json.loads(line) for line in shard.read_text().splitlines()]
    del rows[2]["pair"]["chosen"]
    shard.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spool = Spool(tmp_path / "s", readonly=True)
    assert [r.seq for r in spool.records(0, 2)] == [0, 1]
    with pytest.raises(
        SpoolCorruptError, match=r"line 3: pair \S+ is not a valid pair \(chosen: Field required\)"
    ):
        spool.records()


def test_train_on_a_damaged_spool_is_one_line_naming_the_fix(
    tmp_path: Path,
    data_root: Path,
    pairs_factory: MakePair,
    tiny_qwen2vl: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from spr.cli.main import main
    from trainer_fixtures import TINY_CONFIG

    with Spool(tmp_path / "s", data_root=data_root) as spool:
        spool.append_many([pairs_factory(i) for i in range(3)])
    shard = tmp_path / "s" / "pairs-000000.jsonl"
    shard.write_bytes(shard.read_bytes().replace(b'"seq":1', b'"seq":true', 1))
    argv = [
        "train",
        "--config",
        str(TINY_CONFIG),
        "--model",
        str(tiny_qwen2vl),
        "--dataset",
        str(tmp_path / "s"),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert f"spool file {shard}, line 2: field 'seq' should be a int, is a bool" in err
    assert "Traceback" not in err
