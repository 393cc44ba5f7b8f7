"""``spr scorer serve`` in a subprocess (its own interpreter and GIL, like production) for fault tests.

Memory is read from /proc: ``VmHWM`` is the process's peak resident set, so no polling is needed to
catch a short spike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx
from spr.shared.processes import free_port, stop_process


class ScorerProcess:
    """``with ScorerProcess({"SPR_...": ...}, log) as server:`` serves on ``server.url``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SPR_")}
        self._log = log.open("wb")
        argv = ["scorer", "serve", "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spr.cli.main", *argv],
            env={**clean, "SPR_SCORER_AUTH": "none", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.log = log

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"scorer exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling readiness, with a deadline
        raise TimeoutError("the scorer did not become ready in time")

    def memory_kib(self, field: str) -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def __enter__(self) -> ScorerProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
