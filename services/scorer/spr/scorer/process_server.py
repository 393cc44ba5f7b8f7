"""``spr scorer serve`` in a child process (its own interpreter and GIL, as in production), for fault
tests and load benchmarks that measure the server apart from their own client's CPU and memory.

Memory is read from /proc (Linux): ``VmHWM`` is the process's peak resident set, so a short spike is
caught without polling.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from spr.shared.processes import ChildServer, free_port, stop_process


class ScorerProcess(ChildServer):
    """``with ScorerProcess({"SPR_...": ...}, log) as server:`` serves on ``server.url``.

    The child sees this process's environment without its ``SPR_*`` variables, then ``env``; auth is
    off unless ``env`` sets it (SPR_SCORER_AUTH=none). Its output goes to ``log``.
    """

    start_timeout_s = 180.0
    poll_s = 0.05

    def __init__(self, env: dict[str, str], log: Path, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPR_")}
        self.env.update({"SPR_SCORER_AUTH": "none", **env})
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the scorer process is not started")
        return self.proc.pid

    def _launch(self) -> None:
        argv = ["scorer", "serve", "--host", self.host, "--port", str(self.port), "--log-level", "warning"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spr.cli.main", *argv],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _start_failed(self, *, timed_out: bool, timeout_s: float) -> Exception:
        if timed_out:
            return TimeoutError(f"spr scorer serve was not ready within {timeout_s} s (log: {self.log})")
        tail = self.log.read_text(errors="replace")[-2000:]
        return RuntimeError(f"spr scorer serve exited during start-up: {tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def memory_mib(self, field: str = "VmHWM") -> float:
        """``VmHWM`` (peak) or ``VmRSS`` (now) resident memory of the server process, in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(field)
