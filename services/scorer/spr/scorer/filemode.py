"""File mode of the scorer (``spr scorer run --candidates FILE --out pairs.jsonl``): no Redis, no HTTP.

Reads candidate groups (the jsonl ``spr generator run --tasks ... --out`` writes), scores each with the
worker options (the same :class:`~spr.scorer.scoring.Scorer` as the queue worker and HTTP), and appends
one PreferencePair line per group that makes a pair to ``--out``, the file ``spr train --dataset`` takes.

Every group's outcome is appended to the outcomes file beside it (``pairs.outcomes.jsonl``): ``pair``,
``no pair`` (with the reason, e.g. the margin was too small) or ``failed`` (a group that cannot be
scored: missing image, wrong size, ...). Lines are flushed and fsynced per group, so a crash loses at
most the group in flight; a rerun skips groups whose pair or "no pair" outcome is recorded and retries
the failed ones (after fixing, say, SPR_DATA_ROOT).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import ValidationError
from spr.scorer.scoring import Scorer
from spr.scorer.settings import ScorerSettings
from spr.scorer.worker import check_offline_scoring, score_group
from spr.shared.errors import SprError, first_validation_problem
from spr.shared.progress import DEFAULT_INTERVAL_S, Progress
from spr.shared.queue import PermanentError
from spr.shared.schemas import CandidateGroup, PreferencePair

logger = logging.getLogger(__name__)

OUTCOME_PAIR = "pair"
OUTCOME_NO_PAIR = "no pair"
OUTCOME_FAILED = "failed"


class FileModeError(SprError):
    """An input or output file of ``spr scorer run`` cannot be used (names the file, line and fix)."""


@dataclass
class FileScoreStats:
    """What a file run did: pairs written, groups without a pair (by reason), failures, skips."""

    groups: int = 0
    pairs: int = 0
    no_pair: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    already_done: int = 0

    def line(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.no_pair.items())) or "none"
        return (
            f"{self.pairs} pairs written, {sum(self.no_pair.values())} groups without a pair ({reasons}), "
            f"{self.failed} failed, {self.already_done} already done"
        )


def outcomes_path(out_path: Path) -> Path:
    """The outcomes file beside ``out_path`` (``pairs.jsonl`` -> ``pairs.outcomes.jsonl``)."""
    return out_path.with_name(f"{out_path.stem}.outcomes.jsonl")


def score_file(
    settings: ScorerSettings,
    candidates_path: Path,
    out_path: Path,
    *,
    scorer: Scorer,
    max_groups: int | None = None,
    progress_interval_s: float = DEFAULT_INTERVAL_S,
) -> FileScoreStats:
    """Score every candidate group of ``candidates_path``; append pairs to ``out_path`` (see module doc).

    Raises FileModeError for an unreadable or malformed input line (naming the line) and SettingsError
    for a configuration that would fail every group (no SPR_DATA_ROOT; lambda > 0 without CLIP).
    """
    check_offline_scoring(settings, scorer, "scorer's file mode")
    options = settings.worker_options()
    if out_path.is_dir():
        raise FileModeError(
            f"--out {out_path} is a folder: pass a file name, e.g. {out_path / 'pairs.jsonl'}"
        )
    groups = list(read_groups(candidates_path))
    outcomes = outcomes_path(out_path)
    done = _finished_task_ids(out_path, outcomes)
    todo = [group for group in groups if group.task.task_id not in done]
    stats = FileScoreStats(groups=len(groups), already_done=len(groups) - len(todo))
    if max_groups is not None:
        todo = todo[:max_groups]
    if not todo:
        logger.info("nothing to do: every group of %s has an outcome in %s", candidates_path, outcomes)
        return stats
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileModeError(
            f"cannot create the folder of --out {out_path}: {exc.strerror or exc} (choose a writable --out)"
        ) from None
    progress = Progress("scorer", total=len(todo), unit="group", interval_s=progress_interval_s)
    with (
        progress.start_heartbeat(),
        _open_append(out_path) as pairs_file,
        _open_append(outcomes) as outcomes_file,
    ):
        for group in todo:
            record = {"group_id": group.group_id, "task_id": group.task.task_id}
            try:
                result = score_group(scorer, group, options)
            except PermanentError as exc:
                stats.failed += 1
                logger.warning("group %s cannot be scored: %s", group.group_id, exc)
                _append(outcomes_file, {**record, "outcome": OUTCOME_FAILED, "reason": str(exc)})
                progress.update()
                continue
            if result.pair is None:
                reason = result.skipped_reason or "unknown"
                stats.no_pair[reason] += 1
                _append(outcomes_file, {**record, "outcome": OUTCOME_NO_PAIR, "reason": reason})
            else:
                # The pair first: a crash between the two lines leaves a pair without its outcome,
                # which the rerun still counts as done (pairs are read back too).
                _write_line(pairs_file, result.pair.model_dump_json())
                stats.pairs += 1
                _append(outcomes_file, {**record, "outcome": OUTCOME_PAIR, "pair_id": result.pair.pair_id})
            progress.update()
    if stats.failed:
        logger.warning(
            "%d of %d groups failed (see %s): fix the cause and rerun to retry only those",
            stats.failed,
            len(todo),
            outcomes,
        )
    logger.info("scorer file mode: %s -> %s", stats.line(), out_path)
    return stats


def read_groups(path: Path) -> Iterator[CandidateGroup]:
    """CandidateGroups from a jsonl file (blank lines ignored); a bad line raises FileModeError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FileModeError(
            f"cannot read candidates file {path}: {exc.strerror or exc} (pass the jsonl that "
            "`spr generator run --tasks ... --out FILE` wrote)"
        ) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield CandidateGroup.model_validate_json(line)
        except ValidationError as exc:
            problem = first_validation_problem(exc)
            raise FileModeError(
                f"{path}:{number}: not a candidate group ({problem}); the file must hold "
                "the jsonl that `spr generator run --tasks ... --out FILE` writes"
            ) from None


def read_pairs_file(path: Path) -> list[PreferencePair]:
    """PreferencePairs of a pairs jsonl (blank lines and a partial last line ignored)."""
    pairs = []
    for number, line in enumerate(_complete_lines(path), start=1):
        if not line.strip():
            continue
        try:
            pairs.append(PreferencePair.model_validate_json(line))
        except ValidationError:
            raise FileModeError(
                f"{path}:{number} is not a preference pair: refusing to append to it (choose another --out)"
            ) from None
    return pairs


def _finished_task_ids(out_path: Path, outcomes: Path) -> set[str]:
    """Tasks with a pair in ``out_path`` or a pair / no-pair outcome; torn last lines are cut first."""
    _drop_partial_line(out_path)
    _drop_partial_line(outcomes)
    done = {pair.task_id for pair in read_pairs_file(out_path)} if out_path.exists() else set()
    for number, line in enumerate(_complete_lines(outcomes), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row["outcome"] in (OUTCOME_PAIR, OUTCOME_NO_PAIR):
                done.add(str(row["task_id"]))
        except (ValueError, KeyError, TypeError):
            raise FileModeError(
                f"{outcomes}:{number} is not an outcome line: delete the file to score every group again"
            ) from None
    return done


def _complete_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileModeError(f"cannot read {path}: {exc}") from None


def _drop_partial_line(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline: cut it so the rerun rewrites it."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning("dropping a partial last line (%d bytes) of %s", len(data) - end, path)
        with path.open("r+b") as handle:
            handle.truncate(end)


def _open_append(path: Path) -> IO[str]:
    try:
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise FileModeError(f"cannot write {path}: {exc.strerror or exc} (choose a writable --out)") from None


def _append(handle: IO[str], row: dict[str, object]) -> None:
    _write_line(handle, json.dumps(row, ensure_ascii=False))


def _write_line(handle: IO[str], line: str) -> None:
    handle.write(line + "\n")
    handle.flush()
    os.fsync(handle.fileno())
