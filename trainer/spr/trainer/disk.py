"""Writing checkpoints and adapters: a full disk becomes one clear error instead of a torch traceback.

torch.save reports a failed write as a RuntimeError ("unexpected pos ..."), safetensors and shutil as
OSError; neither says that the disk is full. A failed write is reported as a full disk when the errno
says so, or when the folder's file system has almost no space left afterwards.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spr.shared.errors import SprError

# Below this much free space (bytes) after a failed write, the write is taken to have hit a full disk.
LOW_SPACE_BYTES = 64 * 1024 * 1024


class CheckpointWriteError(SprError):
    """A checkpoint, adapter or ledger could not be written because its disk is full."""


def free_bytes(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the file system holding ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return usage.free, usage.total


def _disk_full(exc: BaseException, directory: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        free, _ = free_bytes(directory)
    except OSError:
        return False
    return free < LOW_SPACE_BYTES


@contextmanager
def checkpoint_writes(directory: Path, what: str, *, resume_hint: str) -> Iterator[None]:
    """Turn a write failure on a full disk inside the block into :class:`CheckpointWriteError`.

    ``what`` names the writes (e.g. "round 0 checkpoints"); ``resume_hint`` says what running the
    command again does. Other errors pass through unchanged.
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not _disk_full(exc, directory):
            raise
        free, total = free_bytes(directory)
        raise CheckpointWriteError(
            f"cannot write {what} to {directory}: its disk is full ({free / 2**20:.1f} MiB free of "
            f"{total / 2**20:.1f} MiB). Free space there or pass --output-dir on a larger disk (fewer "
            f"checkpoints: --save-total-limit), then run the same command again: {resume_hint}. "
            f"[{type(exc).__name__}: {str(exc)[:200]}]"
        ) from exc
