"""Local helper processes (redis-server, a vLLM server, pipeline stages): free ports, stopping, and
the start/stop/wait every server run next to its caller shares (:class:`ChildServer`)."""

from __future__ import annotations

import socket
import subprocess
import time
from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Self


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> bool:
    """SIGTERM ``proc``, then SIGKILL if it has not exited after ``grace_s`` seconds.

    Returns True when it stopped on SIGTERM (or had already exited), False when it had to be killed.
    """
    if proc.poll() is not None:
        return True
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


class ChildServer(ABC):
    """A server run next to its caller (a child process or a thread): :meth:`start` launches it and
    returns its URL once it answers, :meth:`stop` ends it, and a ``with`` block does both.

    A subclass says how to launch it, when it is ready, whether it still runs and which error a failed
    start raises; :meth:`start` polls readiness every ``poll_s`` seconds until ``start_timeout_s``
    (or the ``timeout_s`` given), and stops the server before raising.
    """

    start_timeout_s: ClassVar[float] = 60.0
    poll_s: ClassVar[float] = 0.02

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def _launch(self) -> None:
        """Start the process or thread (returns at once)."""

    @abstractmethod
    def _ready(self) -> bool:
        """Whether the server answers now."""

    @abstractmethod
    def _running(self) -> bool:
        """Whether the process or thread is still alive."""

    @abstractmethod
    def _start_failed(self, *, timed_out: bool, timeout_s: float) -> Exception:
        """The error to raise: it exited during start-up, or (``timed_out``) was not ready in time."""

    @abstractmethod
    def stop(self) -> None:
        """End the server (nothing when it is not running)."""

    def start(self, timeout_s: float | None = None) -> str:
        """Launch the server and wait until it answers; returns its URL."""
        limit = self.start_timeout_s if timeout_s is None else timeout_s
        self._launch()
        deadline = time.monotonic() + limit
        while not self._ready():
            running = self._running()
            if not running or time.monotonic() > deadline:
                error = self._start_failed(timed_out=running, timeout_s=limit)
                self.stop()
                raise error
            time.sleep(self.poll_s)  # polling readiness until the deadline
        return self.url

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
