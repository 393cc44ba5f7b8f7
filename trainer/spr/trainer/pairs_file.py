"""``spr train --dataset pairs.jsonl``: train on the pairs file ``spr scorer run --out`` wrote (no Redis).

The file's pairs are imported into the run's spool (``<output_dir>/spool`` unless ``--spool-dir``)
with the same checks as pairs pulled from the queue (image under the data root, length against
``max_length``), then trained from there. Importing the same file again adds nothing (pair ids are
de-duplicated), so rerunning the command resumes; appending pairs to the file and rerunning trains
the new ones as the next round.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Final

from pydantic import ValidationError
from spr.shared.errors import SprError, first_validation_problem
from spr.shared.schemas import PreferencePair
from spr.trainer.spool import Spool

logger = logging.getLogger(__name__)

PAIRS_FILE_SUFFIXES: Final = (".jsonl", ".json")
IMPORT_BATCH: Final = 256  # pairs per spool append (one fsync each)


class PairsFileError(SprError):
    """A pairs file cannot be read, or a line of it is not a preference pair (names file and line)."""


def is_pairs_file(path: Path) -> bool:
    """Whether ``--dataset`` names a pairs jsonl file (rather than a spool or an exported folder)."""
    return path.is_file() and path.suffix in PAIRS_FILE_SUFFIXES


def read_pairs_file(path: Path) -> list[PreferencePair]:
    """Every PreferencePair line of ``path`` in order (blank lines ignored).

    A partial last line (the writer crashed mid-line) is skipped with a warning; any other bad line
    raises PairsFileError naming it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsFileError(f"cannot read pairs file {path}: {exc}") from None
    lines = text.split("\n")
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            pairs.append(PreferencePair.model_validate_json(line))
        except ValidationError as exc:
            if number == len(lines):  # no newline after it: a torn last line
                logger.warning("%s:%d: skipping a partial last line (%d bytes)", path, number, len(line))
                continue
            problem = first_validation_problem(exc)
            raise PairsFileError(
                f"{path}:{number}: not a preference pair ({problem}); --dataset takes the "
                "jsonl `spr scorer run --out` writes, a spool folder or a `spr pairs export` folder"
            ) from None
    return pairs


def import_pairs_file(path: Path, spool: Spool) -> Counter[str]:
    """Append the pairs of ``path`` to ``spool``; returns counts by outcome (added, duplicate, ...).

    Pairs the spool rejects (image outside the data root, too long, ...) are counted and recorded in
    the spool's rejects file; pairs that could not be stored (e.g. an image missing) raise
    PairsFileError with the first reason, since training without them would silently drop data.
    """
    pairs = read_pairs_file(path)
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for start in range(0, len(pairs), IMPORT_BATCH):
        for result in spool.append_many(pairs[start : start + IMPORT_BATCH]):
            counts[result.status] += 1
            if result.status == "failed":
                failures.append(f"{result.pair_id}: {result.reason}")
    logger.info(
        "imported %s into %s: %s", path, spool.directory, ", ".join(f"{n} {k}" for k, n in counts.items())
    )
    if failures:
        raise PairsFileError(
            f"{len(failures)} pair(s) of {path} could not be stored in the spool (first: {failures[0]}); "
            "fix the cause (e.g. SPR_DATA_ROOT / --data-root) and run the command again"
        )
    if counts["rejected"]:
        logger.warning(
            "%d pair(s) of %s were rejected (reasons in %s/rejects.jsonl)",
            counts["rejected"],
            path,
            spool.directory,
        )
    return counts
