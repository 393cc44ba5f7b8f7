"""Progress of long commands (``spr generator run``, ``spr scorer worker``, ``spr scorer run``).

To a terminal: a tqdm bar (count, rate, ETA). Otherwise (a log file, ``docker logs``, a pipe): one plain
log line every ``interval_s`` seconds with the count, the rate and the ETA, and the same line while
nothing finishes, so a slow first item (a model warming up on a CPU) never looks like a hung process.

The total may be unknown, or follow ``remaining`` (e.g. a queue's backlog), read by the heartbeat
rather than per item: a worker's finished item stays pending until its handler returns and the queue
acknowledges it, so a read right after an item would count that item twice. Without a total the line
shows the count and the rate only.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """``seconds`` as ``1h02m``, ``3m05s`` or ``12s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Counts finished items of one command and reports them (see the module doc).

    ``total``: items expected (None: unknown). ``remaining``: called at start, by the heartbeat (at most
    once per ``interval_s``) and at close to learn how many items are still to do, e.g. a queue's
    backlog; the total becomes done + remaining. ``tty``: force the terminal or the plain mode
    (default: whether ``stream`` is a terminal). ``clock``: seconds, monotonic (tests pass a fake).
    """

    def __init__(
        self,
        desc: str,
        *,
        total: int | None = None,
        unit: str = "item",
        interval_s: float = DEFAULT_INTERVAL_S,
        remaining: Callable[[], int] | None = None,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0 seconds (got {interval_s})")
        self.desc = desc
        self.total = total
        self.unit = unit
        self.interval_s = interval_s
        self.done = 0
        self._remaining = remaining
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._last_remaining = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._closed = False
        self._last_reported: tuple[int, int | None] = (-1, None)
        stream = sys.stderr if stream is None else stream
        self.tty = _isatty(stream) if tty is None else tty
        self._bar: Any = None
        self._redirect: Any = None
        self._refresh_remaining(force=True)
        if self.tty:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=stream, dynamic_ncols=True)
            # Log lines printed while the bar is drawn go through tqdm, so they do not tear it.
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        else:
            logger.info("%s", self.line())

    def start_heartbeat(self) -> Progress:
        """Report every ``interval_s`` even while no item finishes (a daemon thread until close)."""
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name=f"progress-{self.desc}", daemon=True)
            self._heartbeat.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def beat(self) -> None:
        """What the heartbeat does every ``interval_s``: redraw the bar, or log a line unless idle.

        An idle worker (nothing left to do, nothing finished since the last line) stays quiet.
        """
        with self._lock:
            self._refresh_remaining(force=False)
            if self._bar is not None:
                if self._bar.total != self.total:
                    self._bar.total = self.total
                self._bar.refresh()  # tqdm only redraws on update: keep the elapsed time moving
                return
            idle = self.total is not None and self.done >= self.total
            if idle and (self.done, self.total) == self._last_reported:
                return
            if self._clock() - self._last_line >= self.interval_s * 0.99:
                self._emit()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished items (thread-safe)."""
        with self._lock:
            self.done += n
            if self.total is not None and self.done > self.total:
                self.total = self.done  # more work arrived than the last backlog read showed
            if self._bar is not None:
                if self._bar.total != self.total:
                    self._bar.total = self.total
                self._bar.update(n)
            elif self._clock() - self._last_line >= self.interval_s:
                self._emit()

    def _refresh_remaining(self, *, force: bool) -> None:
        if self._remaining is None:
            return
        now = self._clock()
        if not force and now - self._last_remaining < self.interval_s:
            return
        self._last_remaining = now
        try:
            self.total = self.done + max(0, self._remaining())
        except Exception as exc:  # progress must never stop the work it reports on
            logger.debug("progress: cannot read the remaining count: %s", exc)

    def _emit(self) -> None:
        self._last_line = self._clock()
        self._last_reported = (self.done, self.total)
        logger.info("%s", self.line())

    def rate(self) -> float:
        """Items per second since start."""
        return self.done / max(self._clock() - self._started, 1e-9)

    def line(self) -> str:
        """One plain progress line: ``desc: 12/40 tasks (30%), 0.50 tasks/s, elapsed 24s, ETA 56s``."""
        elapsed = self._clock() - self._started
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.desc}: {count} {self.unit}s{percent}"]
        rate = self.rate()
        if self.done:
            parts.append(f"{rate:.2f} {self.unit}s/s" if rate >= 0.1 else f"{1 / rate:.1f} s/{self.unit}")
        parts.append(f"elapsed {format_duration(elapsed)}")
        finished = self.total is not None and self.done >= self.total
        if finished and self._remaining is not None:
            parts.append("waiting for work")
        elif self.total is not None and not finished and self.done:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        elif not self.done and not finished:
            parts.append(f"working on the first {self.unit}")
        return ", ".join(parts)

    def close(self) -> None:
        """Stop the heartbeat; finish the bar, or log the final line."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._lock:
            self._refresh_remaining(force=True)
            if self._bar is not None:
                self._bar.total = self.total
                self._bar.close()
                self._redirect.__exit__(None, None, None)
                self._bar = None
            elif not self._closed:
                self._emit()
            self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: plain lines
        return False
