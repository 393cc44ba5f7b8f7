"""Crash-safe JSON Lines files: whole-line appends with fsync, and reading that tells a torn final
write (cut off) from damage in the middle (refused).

A write is one ``write()`` of whole lines followed by ``fsync``; a file or folder entry that was just
created is made durable by ``fsync`` on its folder. After a crash the only possible damage is a torn
tail: bytes of the last write without their final newline (or garbage the filesystem left there).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from spr.shared.errors import SprError

logger = logging.getLogger(__name__)


class JsonlCorruptError(SprError):
    """A JSONL file holds a damaged line that is not a torn final write."""


class JsonlWriteError(SprError):
    """A JSONL file could not be written (disk full, permissions)."""


def encode_line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def append_lines(path: Path, lines: list[bytes]) -> None:
    """Append whole lines and fsync; on failure cut the file back so no partial line stays behind."""
    created = not path.exists()
    with path.open("ab") as handle:
        size = handle.tell()
        try:
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            try:
                handle.truncate(size)
            except OSError:
                logger.exception("could not cut %s back to %d bytes after a failed write", path, size)
            raise JsonlWriteError(f"cannot write {path}: {exc}") from exc
    if created:
        fsync_dir(path.parent)


def write_new_file(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path, *, repair: bool) -> list[dict[str, Any]]:
    """The rows of a JSONL file. A damaged tail (no later good line) is a torn write: it is cut off
    when ``repair`` (the writer), ignored otherwise (a reader racing the writer). A damaged line with
    good lines after it raises JsonlCorruptError."""
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    pos = 0
    while pos < len(data):
        newline = data.find(b"\n", pos)
        if newline == -1:
            break  # torn: the write never reached its newline
        try:
            rows.append(json.loads(data[pos:newline]))
        except ValueError:
            if any(_parses(line) for line in data[newline + 1 :].split(b"\n")):
                line_no = data.count(b"\n", 0, pos) + 1
                raise JsonlCorruptError(
                    f"{path} line {line_no} is damaged and later lines are intact: restore the file from "
                    "a backup or move the damaged line to a separate file"
                ) from None
            break
        pos = newline + 1
    if pos < len(data) and repair:
        logger.warning("%s: cutting off a torn final write (%d bytes)", path, len(data) - pos)
        with path.open("r+b") as handle:
            handle.truncate(pos)
            handle.flush()
            os.fsync(handle.fileno())
    return rows


def _parses(line: bytes) -> bool:
    if not line.strip():
        return False
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
