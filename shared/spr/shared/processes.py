"""Local helper processes (redis-server, a vLLM server, pipeline stages): free ports and stopping."""

from __future__ import annotations

import socket
import subprocess


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
