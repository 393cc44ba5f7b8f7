"""Which pairs an output folder has trained, and where to resume: the round ledger and checkpoints.

A source of pairs (a spool, or an exported dataset) is append-only and ordered, so "pairs i to j" keep
meaning the same pairs. Training happens in *rounds*, each a range ``[start, end)`` of that order:

* a round's range is written to ``<output_dir>/rounds.json`` (fsynced) *before* it trains, so a rerun
  after a crash resumes the same range, never a range that grew meanwhile;
* a round trains ``num_train_epochs`` over its range, checkpointing into ``<output_dir>/round-NNN/``;
  a rerun resumes it from its last complete checkpoint (transformers skips the batches already seen,
  and the seeded sampler replays the same order), so no pair of the round is lost or trained twice;
* round k > 0 starts from round k - 1's adapter; the reference model stays the frozen base;
* the next round starts where the last one ended: a rerun with more pairs trains only the new ones.

Without ``round_size`` a run plans one round over every untrained pair.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from spr.shared.errors import SprError

logger = logging.getLogger(__name__)

LEDGER_FILE: Final = "rounds.json"
# transformers writes trainer_state.json last when it saves a checkpoint: its presence marks a
# checkpoint that was completely written.
CHECKPOINT_COMPLETE_MARKER: Final = "trainer_state.json"
_CHECKPOINT_RE: Final = re.compile(r"^checkpoint-(\d+)$")


class LedgerError(SprError):
    """The output folder's round ledger does not match this run."""


@dataclass
class Round:
    index: int
    start: int
    end: int
    done: bool = False
    steps: int = 0

    @property
    def pairs(self) -> int:
        return self.end - self.start


def round_dir(output_dir: Path, index: int) -> Path:
    return output_dir / f"round-{index:03d}"


class RoundLedger:
    """``<output_dir>/rounds.json``: the source the folder trains on and its rounds."""

    def __init__(self, output_dir: Path, source: str) -> None:
        self.output_dir = output_dir
        self.source = source
        self.rounds: list[Round] = []
        path = output_dir / LEDGER_FILE
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("source") != source:
                raise LedgerError(
                    f"{output_dir} was trained on {data.get('source')}, not {source}: use a new --output-dir "
                    "(round positions only make sense for one source)"
                )
            self.rounds = [Round(**item) for item in data.get("rounds", [])]

    def pending(self) -> Round | None:
        """The round planned but not finished (a previous run stopped inside it), if any."""
        return next((item for item in self.rounds if not item.done), None)

    def next_start(self) -> int:
        return self.rounds[-1].end if self.rounds else 0

    def done(self) -> list[Round]:
        return [item for item in self.rounds if item.done]

    def plan(self, end: int) -> Round:
        """Record the next round ``[next_start, end)`` durably and return it."""
        start = self.next_start()
        if end <= start:
            raise ValueError(f"empty round [{start}, {end})")
        planned = Round(index=len(self.rounds), start=start, end=end)
        self.rounds.append(planned)
        self._save()
        return planned

    def complete(self, finished: Round, steps: int) -> None:
        finished.done = True
        finished.steps = steps
        self._save()

    def _save(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / LEDGER_FILE
        partial = path.with_name(f".{LEDGER_FILE}.partial")
        data = {"source": self.source, "rounds": [asdict(item) for item in self.rounds]}
        with partial.open("w") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        fd = os.open(self.output_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def last_complete_checkpoint(directory: Path) -> Path | None:
    """The newest fully written ``checkpoint-N`` in ``directory``; partial ones are deleted.

    A checkpoint a kill interrupted lacks its trainer state; resuming from it would crash, and leaving
    it would collide with the checkpoint the resumed run writes at that step.
    """
    if not directory.is_dir():
        return None
    complete: list[tuple[int, Path]] = []
    for child in directory.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match is None or not child.is_dir():
            continue
        if (child / CHECKPOINT_COMPLETE_MARKER).is_file():
            complete.append((int(match.group(1)), child))
        else:
            logger.warning("removing incomplete checkpoint %s (interrupted while saving)", child)
            shutil.rmtree(child, ignore_errors=True)
    return max(complete)[1] if complete else None
