"""Child processes of the demo: one `spr ...` command per pipeline stage, with its own log file.

The demo runs every stage as a real process talking to the others only through the queue, as a
deployment would. Stopping is graceful first (SIGTERM, then SIGKILL after a grace period); since every
consumer acknowledges only after its output is written, a stage stopped at any moment leaves its
unfinished input pending on the queue for the next run to reclaim.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spr.shared.errors import SprError
from spr.shared.processes import stop_process

logger = logging.getLogger(__name__)


class StageFailedError(SprError):
    """A stage's process exited with an error; the message points at its log file."""


@dataclass
class StageProcess:
    """One running `spr` subcommand. ``argv`` excludes the program name."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    started_at: float = 0.0
    ended_at: float | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> StageProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        command = [sys.executable, "-m", "spr.cli.main", *self.argv]
        logger.debug("starting stage %s: %s", self.name, " ".join(command))
        # A new process group, so that a Ctrl-C in the terminal reaches only the demo, which then stops
        # each child itself in order.
        self._proc = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"stage {self.name} was not started")
        return self._proc.pid

    def poll(self) -> int | None:
        if self._proc is None:
            return None
        code = self._proc.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    @property
    def running(self) -> bool:
        return self._proc is not None and self.poll() is None

    @property
    def wall_s(self) -> float:
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return end - self.started_at if self.started_at else 0.0

    def wait(self, timeout_s: float | None = None) -> int:
        if self._proc is None:
            raise RuntimeError(f"stage {self.name} was not started")
        code = self._proc.wait(timeout=timeout_s)
        self.poll()
        return code

    def check(self) -> None:
        """Raise StageFailedError if the process has exited with a non-zero code."""
        code = self.poll()
        if code not in (None, 0):
            raise StageFailedError(
                f"stage {self.name} exited with code {code}; see {self.log_path}:\n{self.tail()}"
            )

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` seconds. Safe to call on a finished process."""
        if self._proc is None or self.poll() is not None:
            return
        if not stop_process(self._proc, grace_s):
            logger.warning("stage %s did not stop in %.0f s; it was killed", self.name, grace_s)
        self.poll()

    def kill(self) -> None:
        """SIGKILL at once (used by tests to simulate a crash)."""
        if self._proc is not None and self.poll() is None:
            self._proc.kill()
            self._proc.wait()
            self.poll()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
