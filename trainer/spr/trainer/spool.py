"""The spool: the trainer's durable local dataset of preference pairs.

Layout of a spool folder::

    spool.json            format marker and shard size
    pairs-000000.jsonl    one accepted pair per line, in arrival order (``seq`` 0, 1, 2, ...)
    pairs-000001.jsonl    the next ``shard_size`` pairs, ...
    rejects.jsonl         pairs refused before training, each with its reason
    images/               copies of the pairs' images (only with ``copy_images``)
    spool.lock            held (flock) by the one process that may append

Durability contract (the queue acks a pair only after :meth:`Spool.append_many` returns): a batch is
written as whole lines, flushed and ``fsync``-ed, and the folder is ``fsync``-ed whenever a file is
created in it. A crash mid-write can only leave a torn *last* line: opening the spool for writing cuts
it off (that pair was never acknowledged, so the queue redelivers it). A damaged line followed by good
ones is not a torn write and raises :class:`SpoolCorruptError` instead of silently dropping pairs.

Every pair id is recorded once, accepted or rejected: a redelivered pair is a duplicate and is dropped.
Over-long pairs are rejected, never truncated (truncation would cut image tokens out of the prompt).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final, Literal

from pydantic import ValidationError
from spr.shared.errors import SprError, validation_problems
from spr.shared.schemas import PreferencePair
from spr.trainer.jsonl import (
    JsonlCorruptError,
    JsonlWriteError,
    append_lines,
    encode_line,
    fsync_dir,
    read_jsonl,
    write_new_file,
)

logger = logging.getLogger(__name__)

SPOOL_FORMAT: Final = "spr-spool"
SPOOL_VERSION: Final = 1
META_FILE: Final = "spool.json"
REJECTS_FILE: Final = "rejects.jsonl"
LOCK_FILE: Final = "spool.lock"
IMAGES_DIR: Final = "images"
SHARD_PREFIX: Final = "pairs-"
DEFAULT_SHARD_SIZE: Final = 10_000

RejectReason = Literal["too_long", "image_outside_data_root", "image_unreadable", "placeholder_in_text"]
AppendStatus = Literal["added", "duplicate", "rejected", "failed"]
# (pair, resolved image file) -> sequence length in tokens (prompt with image tokens + longer response).
LengthFn = Callable[[PreferencePair, Path], int]


class SpoolError(SprError):
    """The spool cannot be opened or written (bad folder, another writer, missing data root)."""


class SpoolCorruptError(SpoolError):
    """A spool file holds a damaged line that is not a torn final write."""


class PlaceholderInText(SpoolError):  # noqa: N818 - the name says what the pair has
    """A text holds the processor's image/video placeholder token, which it would expand into image
    tokens that have no image: TRL fails on such a pair, so it is rejected before training."""


class UnreadableImage(SpoolError):  # noqa: N818 - the name says what the pair has
    """A pair's image exists but cannot be decoded: the pair can never be trained."""


def is_spool(path: Path) -> bool:
    """True when ``path`` is a spool folder (has the marker file)."""
    return (path / META_FILE).is_file()


def read_spool(directory: Path, start: int = 0, end: int | None = None) -> list[SpoolRecord]:
    """The accepted pairs ``start <= seq < end`` of the spool in ``directory``, read-only: no writer lock
    taken and a torn last line ignored, so it is safe while the trainer appends. The one way other
    parts (the pair viewer, the benchmark, the demo's rounds) read a spool. SpoolError when
    ``directory`` is not a spool or is damaged."""
    with Spool(directory, readonly=True) as spool:
        return spool.records(start, end)


@dataclass(frozen=True)
class SpoolRecord:
    """One accepted pair. ``image_file`` is absolute, or relative to the spool folder when copied."""

    seq: int
    pair: PreferencePair
    image_file: str
    tokens: int | None

    def image_path(self, spool_dir: Path) -> Path:
        return spool_dir / self.image_file  # an absolute image_file wins over spool_dir


@dataclass(frozen=True)
class AppendResult:
    """What happened to one pair. ``failed`` = not stored, may succeed later (do not acknowledge)."""

    pair_id: str
    status: AppendStatus
    reason: str | None = None
    tokens: int | None = None


@dataclass(frozen=True)
class SpoolStats:
    pairs: int
    added: int
    duplicates: int
    rejected: dict[str, int]
    failed: int


@dataclass
class _Prepared:
    pair: PreferencePair
    line: dict[str, Any] | None = None
    reject: dict[str, Any] | None = None
    result: AppendResult | None = None


class Spool:
    """An append-only, crash-safe, de-duplicating store of preference pairs (see the module doc).

    ``data_root``: folder the pairs' ``image.path`` are relative to (needed to append).
    ``max_length`` / ``measure``: pairs longer than ``max_length`` tokens (as ``measure`` counts them)
    are rejected with reason ``too_long``; no check when either is None.
    ``readonly``: open without the writer lock and without repairing a torn tail (for readers while a
    writer runs); appending then raises.
    """

    def __init__(
        self,
        directory: Path,
        *,
        data_root: Path | None = None,
        max_length: int | None = None,
        measure: LengthFn | None = None,
        copy_images: bool = False,
        shard_size: int = DEFAULT_SHARD_SIZE,
        readonly: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.data_root = data_root.resolve() if data_root is not None else None
        self.max_length = max_length
        self.measure = measure
        self.copy_images = copy_images
        self.readonly = readonly
        self._lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self._ids: set[str] = set()
        self._count = 0
        self._rejected: Counter[str] = Counter()
        self._added = 0
        self._duplicates = 0
        self._failed = 0
        if readonly:
            if not is_spool(self.directory):
                raise SpoolError(f"{self.directory} is not a spool folder (no {META_FILE})")
        else:
            self._create_or_lock(shard_size)
        self.shard_size = self._read_meta()
        self._load()

    # -- opening -------------------------------------------------------------------------------------

    def _create_or_lock(self, shard_size: int) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise SpoolError(f"spool path {self.directory} is a file: pass a folder (--spool-dir)")
        # The lock file alone is what a crash right after creating the folder leaves: still a new spool.
        foreign = self.directory.is_dir() and any(p.name != LOCK_FILE for p in self.directory.iterdir())
        if foreign and not is_spool(self.directory):
            raise SpoolError(f"{self.directory} is not empty and not a spool: pass a new or spool folder")
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = (self.directory / LOCK_FILE).open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SpoolError(
                f"spool {self.directory} is being written by another process: stop it or use another "
                "--spool-dir"
            ) from None
        self._lock_file = lock
        if not is_spool(self.directory):
            meta = {"format": SPOOL_FORMAT, "version": SPOOL_VERSION, "shard_size": shard_size}
            write_new_file(self.directory / META_FILE, (json.dumps(meta) + "\n").encode())

    def _read_meta(self) -> int:
        try:
            meta = json.loads((self.directory / META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise SpoolCorruptError(f"cannot read {self.directory / META_FILE}: {exc}") from exc
        if meta.get("format") != SPOOL_FORMAT or meta.get("version") != SPOOL_VERSION:
            raise SpoolError(f"{self.directory} holds an unknown spool format: {meta}")
        return int(meta["shard_size"])

    def _shard_paths(self) -> list[Path]:
        return sorted(self.directory.glob(f"{SHARD_PREFIX}*.jsonl"))

    def _load(self) -> None:
        shards = self._shard_paths()
        for index, path in enumerate(shards):
            last = index == len(shards) - 1
            rows = _rows(path, repair=last and not self.readonly)
            if not last and len(rows) != self.shard_size:
                raise SpoolCorruptError(f"{path} holds {len(rows)} pairs, expected {self.shard_size}")
            for line, row in enumerate(rows, start=1):
                _check_row(path, line, row, _SHARD_FIELDS)
                if row.get("seq") != self._count:
                    raise SpoolCorruptError(
                        f"{path}: pair {row.get('pair_id')} has seq {row.get('seq')}, expected {self._count}"
                    )
                self._ids.add(str(row["pair_id"]))
                self._count += 1
        rejects = self.directory / REJECTS_FILE
        if rejects.exists():
            for line, row in enumerate(_rows(rejects, repair=not self.readonly), start=1):
                _check_row(rejects, line, row, _REJECT_FIELDS)
                self._ids.add(str(row["pair_id"]))
                self._rejected[str(row["reason"])] += 1
        if self._count or self._rejected:
            rejected = sum(self._rejected.values())
            logger.info("spool %s: %d pairs, %d rejected", self.directory, self._count, rejected)

    # -- reading -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __contains__(self, pair_id: object) -> bool:
        return pair_id in self._ids

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(
                pairs=self._count,
                added=self._added,
                duplicates=self._duplicates,
                rejected=dict(self._rejected),
                failed=self._failed,
            )

    def records(self, start: int = 0, end: int | None = None) -> list[SpoolRecord]:
        """Accepted pairs ``start <= seq < end`` in spool order (end defaults to the current length)."""
        with self._lock:
            count = self._count
        end = count if end is None else min(end, count)
        if start >= end:
            return []
        out: list[SpoolRecord] = []
        first, last = start // self.shard_size, (end - 1) // self.shard_size
        for shard in range(first, last + 1):
            path = self.directory / f"{SHARD_PREFIX}{shard:06d}.jsonl"
            for line, row in enumerate(_rows(path, repair=False), start=1):
                _check_row(path, line, row, _SHARD_FIELDS)
                if start <= row["seq"] < end:
                    try:
                        pair = PreferencePair.model_validate(row["pair"])
                    except ValidationError as exc:
                        problem = f"pair {row['pair_id']} is not a valid pair ({validation_problems(exc)})"
                        raise SpoolCorruptError(_damaged(path, line, problem)) from None
                    out.append(
                        SpoolRecord(
                            seq=int(row["seq"]),
                            pair=pair,
                            image_file=str(row["image_file"]),
                            tokens=row.get("tokens"),
                        )
                    )
        return out

    def rejects(self) -> Iterator[dict[str, Any]]:
        """The reject records (pair_id, reason, detail, tokens, max_length, pair) in order."""
        path = self.directory / REJECTS_FILE
        if path.exists():
            yield from _rows(path, repair=False)

    # -- writing -------------------------------------------------------------------------------------

    def append(self, pair: PreferencePair) -> AppendResult:
        return self.append_many([pair])[0]

    def append_many(self, pairs: Iterable[PreferencePair]) -> list[AppendResult]:
        """Store ``pairs`` durably; on return every ``added``/``rejected`` pair is on disk (fsynced).

        Results are in input order. ``duplicate``: the pair id was stored (or rejected) before, or earlier
        in this batch. ``failed``: not stored (e.g. the image is missing): do not acknowledge it.
        Raises SpoolError when the spool itself cannot be written (nothing of the batch is then stored).
        """
        if self.readonly:
            raise SpoolError(f"spool {self.directory} was opened read-only")
        with self._lock:
            prepared: list[_Prepared] = []
            batch_ids: set[str] = set()
            for pair in pairs:
                if pair.pair_id in self._ids or pair.pair_id in batch_ids:
                    prepared.append(_Prepared(pair, result=AppendResult(pair.pair_id, "duplicate")))
                    continue
                item = self._prepare(pair)
                if item.line is not None or item.reject is not None:
                    batch_ids.add(pair.pair_id)
                prepared.append(item)
            rejected = [item for item in prepared if item.reject is not None]
            if rejected:
                lines = [encode_line(item.reject or {}) for item in rejected]
                _append(self.directory / REJECTS_FILE, lines)
                for item in rejected:
                    self._ids.add(item.pair.pair_id)
                    self._rejected[str((item.reject or {})["reason"])] += 1
            self._write_accepted([item for item in prepared if item.line is not None])
            results: list[AppendResult] = []
            for item in prepared:
                assert item.result is not None  # every _Prepared carries its result
                results.append(item.result)
                if item.result.status == "added":
                    self._ids.add(item.pair.pair_id)
                    self._added += 1
                elif item.result.status == "duplicate":
                    self._duplicates += 1
                elif item.result.status == "failed":
                    self._failed += 1
            return results

    def _prepare(self, pair: PreferencePair) -> _Prepared:
        if self.data_root is None:
            raise SpoolError(
                "data root is not set: set SPR_DATA_ROOT (or --data-root) to the folder the pairs' "
                "image paths are relative to"
            )
        relative = PurePosixPath(pair.image.path)
        source = (self.data_root / relative).resolve()
        if relative.is_absolute() or ".." in relative.parts or not source.is_relative_to(self.data_root):
            return self._rejected_item(pair, "image_outside_data_root", f"image path {pair.image.path!r}")
        if not source.is_file():
            return _Prepared(
                pair,
                result=AppendResult(
                    pair.pair_id,
                    "failed",
                    reason=f"image {source} not found (is SPR_DATA_ROOT={self.data_root} right?)",
                ),
            )
        tokens: int | None = None
        if self.measure is not None:
            try:
                tokens = self.measure(pair, source)
            except UnreadableImage as exc:
                return self._rejected_item(pair, "image_unreadable", str(exc))
            except PlaceholderInText as exc:
                return self._rejected_item(pair, "placeholder_in_text", str(exc))
            except Exception as exc:  # the processor choked on this pair: let the queue retry it
                logger.warning("measuring pair %s failed: %s", pair.pair_id, exc)
                return _Prepared(
                    pair, result=AppendResult(pair.pair_id, "failed", reason=f"length check failed: {exc}")
                )
            if self.max_length is not None and tokens > self.max_length:
                return self._rejected_item(
                    pair, "too_long", f"{tokens} tokens > max_length {self.max_length}", tokens=tokens
                )
        image_file = self._copy_image(relative, source) if self.copy_images else str(source)
        line = {
            "seq": -1,  # assigned at write time, in write order
            "pair_id": pair.pair_id,
            "image_file": image_file,
            "tokens": tokens,
            "pair": pair.model_dump(mode="json"),
        }
        return _Prepared(pair, line=line, result=AppendResult(pair.pair_id, "added", tokens=tokens))

    def _rejected_item(
        self, pair: PreferencePair, reason: RejectReason, detail: str, *, tokens: int | None = None
    ) -> _Prepared:
        logger.info("rejected pair %s: %s (%s)", pair.pair_id, reason, detail)
        reject = {
            "pair_id": pair.pair_id,
            "reason": reason,
            "detail": detail,
            "tokens": tokens,
            "max_length": self.max_length,
            "pair": pair.model_dump(mode="json"),
        }
        return _Prepared(
            pair, reject=reject, result=AppendResult(pair.pair_id, "rejected", reason=reason, tokens=tokens)
        )

    def _copy_image(self, relative: PurePosixPath, source: Path) -> str:
        target = self.directory / IMAGES_DIR / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            with source.open("rb") as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(partial, target)
            fsync_dir(target.parent)
        return str(PurePosixPath(IMAGES_DIR) / relative)

    def _write_accepted(self, accepted: list[_Prepared]) -> None:
        seq = self._count
        index = 0
        while index < len(accepted):
            shard, in_shard = divmod(seq, self.shard_size)
            take = accepted[index : index + self.shard_size - in_shard]
            lines = []
            for item in take:
                assert item.line is not None
                item.line["seq"] = seq
                lines.append(encode_line(item.line))
                seq += 1
            _append(self.directory / f"{SHARD_PREFIX}{shard:06d}.jsonl", lines)
            index += len(take)
        self._count = seq

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The fields (and their types) every line of a shard / of the rejects file holds.
_SHARD_FIELDS: Final[dict[str, type]] = {"seq": int, "pair_id": str, "image_file": str, "pair": dict}
_REJECT_FIELDS: Final[dict[str, type]] = {"pair_id": str, "reason": str}


def _damaged(path: Path, line: int, problem: str) -> str:
    return (
        f"spool file {path}, line {line}: {problem}. The spool is damaged (edited by hand, or a disk "
        f"error): restore {path.name} from a backup, or move the spool folder aside and start a new one "
        "(--spool-dir)"
    )


def _check_row(path: Path, line: int, row: Any, fields: dict[str, type]) -> None:
    """Raise SpoolCorruptError naming file:line when a parsed line is not a spool row."""
    if not isinstance(row, dict):
        raise SpoolCorruptError(_damaged(path, line, f"expected a JSON object, got {type(row).__name__}"))
    for name, kind in fields.items():
        value = row.get(name)
        # bool is an int to Python, never a seq
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            got = "missing" if name not in row else f"a {type(value).__name__}"
            raise SpoolCorruptError(
                _damaged(path, line, f"field {name!r} should be a {kind.__name__}, is {got}")
            )


def _rows(path: Path, *, repair: bool) -> list[dict[str, Any]]:
    try:
        return read_jsonl(path, repair=repair)
    except JsonlCorruptError as exc:
        raise SpoolCorruptError(str(exc)) from exc


def _append(path: Path, lines: list[bytes]) -> None:
    try:
        append_lines(path, lines)
    except JsonlWriteError as exc:
        raise SpoolError(f"cannot write the spool: {exc}") from exc
