"""A private ``redis-server`` process on a free loopback port, for the demo and the tests.

Production deployments point ``SPR_REDIS_URL`` at their own Redis; this exists so that one command can
run the whole pipeline on a bare machine, and so that tests never touch a shared server.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from pathlib import Path

from spr.shared.errors import SprError
from spr.shared.processes import ChildServer, free_port, stop_process

logger = logging.getLogger(__name__)


class RedisServerError(SprError):
    """redis-server is missing or did not start."""


def is_reachable(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class LocalRedis(ChildServer):
    """Start ``redis-server`` on a free port with its files in ``workdir``; stop it on exit.

    ``persistent=True`` turns on the append-only file so that a restarted server keeps its streams.
    """

    start_timeout_s = 10.0

    def __init__(self, workdir: Path, *, port: int | None = None, persistent: bool = False) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.persistent = persistent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError(
                "redis-server is not installed: run scripts/bootstrap.sh (or apt-get install redis-server), "
                "or set SPR_REDIS_URL to a running Redis"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.workdir),
        ]
        args += ["--appendonly", "yes" if self.persistent else "no"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _ready(self) -> bool:
        if not is_reachable("127.0.0.1", self.port):
            return False
        logger.info("started private redis-server on port %d", self.port)
        return True

    def _running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _start_failed(self, *, timed_out: bool, timeout_s: float) -> Exception:
        return RedisServerError(f"redis-server did not start on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (no shutdown save; the AOF keeps what it had written)."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        self._proc = None
