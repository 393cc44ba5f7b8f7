"""`spr scorer run --candidates FILE --out pairs.jsonl`: scoring without Redis or HTTP, resumable."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from scorer_fixtures import CUP, DOG, candidate_group, grounded
from spr.cli.main import main
from spr.scorer.filemode import FileModeError, outcomes_path, score_file
from spr.scorer.loading import load_scorer
from spr.scorer.settings import ScorerSettings, SettingsError
from spr.shared.schemas import CandidateGroup, PreferencePair
from test_scorer_worker import CLOSE, GOOD

Settings = Callable[..., ScorerSettings]


def _write(path: Path, groups: list[CandidateGroup]) -> Path:
    path.write_text("".join(g.model_dump_json() + "\n" for g in groups))
    return path


def _pairs(path: Path) -> list[PreferencePair]:
    return [PreferencePair.model_validate_json(line) for line in path.read_text().splitlines()]


def _outcomes(out: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in outcomes_path(out).read_text().splitlines()]
    return {row["task_id"]: row["outcome"] for row in rows}


def test_file_mode_writes_pairs_and_outcomes_and_resumes(make_settings: Settings, tmp_path: Path) -> None:
    settings = make_settings(scorer_lambda=0.0)
    scorer = load_scorer(settings)
    candidates = _write(
        tmp_path / "candidates.jsonl",
        [
            candidate_group("one", GOOD),
            candidate_group("close", CLOSE),
            candidate_group("missing", GOOD, image="nope.png"),
            candidate_group("two", GOOD[::-1]),
        ],
    )
    out = tmp_path / "out" / "pairs.jsonl"

    stats = score_file(settings, candidates, out, scorer=scorer)

    assert (stats.groups, stats.pairs, stats.failed, stats.already_done) == (4, 2, 1, 0)
    assert dict(stats.no_pair) == {"margin too small": 1}
    pairs = {p.task_id: p for p in _pairs(out)}
    assert set(pairs) == {"one", "two"}
    one = pairs["one"]
    # the same pair the queue worker makes, with the text before refinement kept for the viewer
    assert one.pair_id == PreferencePair.make_id("one") and one.chosen.refined
    assert one.chosen.text == grounded("ferret", "a cup", CUP) + " and " + grounded("ferret", "a dog", DOG)
    assert one.chosen.text_before_refinement == GOOD[0]
    assert one.rejected.text == GOOD[1] and one.rejected.text_before_refinement is None
    assert _outcomes(out) == {"one": "pair", "close": "no pair", "missing": "failed", "two": "pair"}

    # a rerun retries only the failed group (still failing) and writes no duplicate
    again = score_file(settings, candidates, out, scorer=scorer)
    assert (again.pairs, again.failed, again.already_done) == (0, 1, 3)
    assert len(_pairs(out)) == 2

    # a crash mid-line: the torn pair line is cut and that group scored again, once
    text = out.read_text()
    out.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1] + text.splitlines()[-1][:40])
    lines = outcomes_path(out).read_text().splitlines()
    last_pair_task = json.loads(text.splitlines()[-1])["task_id"]
    outcomes_path(out).write_text(
        "".join(line + "\n" for line in lines if json.loads(line)["task_id"] != last_pair_task)
    )
    third = score_file(settings, candidates, out, scorer=scorer)
    assert third.pairs == 1
    assert sorted(p.task_id for p in _pairs(out)) == ["one", "two"]


def test_file_mode_bad_inputs_are_one_clear_error(make_settings: Settings, tmp_path: Path) -> None:
    settings = make_settings(scorer_lambda=0.0)
    scorer = load_scorer(settings)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(candidate_group("one", GOOD).model_dump_json() + "\n" + '{"task": {}}\n')
    with pytest.raises(FileModeError, match=r"bad\.jsonl:2: not a candidate group \(task\.task_id"):
        score_file(settings, bad, tmp_path / "pairs.jsonl", scorer=scorer)
    good = _write(tmp_path / "good.jsonl", [candidate_group("one", GOOD)])
    not_pairs = tmp_path / "not-pairs.jsonl"
    not_pairs.write_text('{"hello": 1}\n')
    with pytest.raises(FileModeError, match="not a preference pair: refusing to append"):
        score_file(settings, good, not_pairs, scorer=scorer)
    with pytest.raises(FileModeError, match="is a folder: pass a file name"):
        score_file(settings, good, tmp_path, scorer=scorer)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(FileModeError, match="cannot create the folder of --out"):
        score_file(settings, good, blocker / "sub" / "pairs.jsonl", scorer=scorer)
    no_model = make_settings()  # lambda 0.8 without a semantic model
    with pytest.raises(SettingsError, match=r"SPR_SCORER_LAMBDA=0\.8 needs a semantic model"):
        score_file(no_model, good, tmp_path / "p.jsonl", scorer=load_scorer(no_model))


def test_scorer_run_command(
    monkeypatch: pytest.MonkeyPatch,
    scorer_data_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv("SPR_SCORER_LAMBDA", "0")
    monkeypatch.setenv("SPR_DATA_ROOT", str(scorer_data_root))
    monkeypatch.delenv("SPR_REDIS_URL", raising=False)  # file mode needs no Redis
    candidates = _write(tmp_path / "c.jsonl", [candidate_group("cli", GOOD), candidate_group("close", CLOSE)])
    out = tmp_path / "pairs.jsonl"
    assert main(["scorer", "run", "--candidates", str(candidates), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 pairs written, 1 groups without a pair (1 margin too small)" in printed
    assert [p.task_id for p in _pairs(out)] == ["cli"]
    assert main(["scorer", "run", "--candidates", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
    assert "--candidates" in capsys.readouterr().err
    # a group that cannot be scored makes the exit status 1 (the pairs made are kept)
    broken = _write(tmp_path / "b.jsonl", [candidate_group("gone", GOOD, image="nope.png")])
    assert main(["scorer", "run", "--candidates", str(broken), "--out", str(tmp_path / "b-pairs.jsonl")]) == 1
