"""``spr scorer serve --workers N``: N server processes, one model each, sharing one listening socket.

For CPU hosts: one Python process serves at most about one core (its GIL), so N processes use N cores.
The parent binds the socket, forks N children and then only waits: each child loads its own models
(after the fork, so that no torch thread pool crosses it), builds the app and runs uvicorn on the
inherited socket; the kernel spreads new connections between them. SIGTERM or SIGINT to the parent is
passed on to every child (each finishes its requests in flight); a child that exits on its own makes
the parent stop the others and exit non-zero. Limits (connections, pixel budget, image cache) apply
per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from types import FrameType

from spr.scorer.settings import ScorerSettings

logger = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port``, inheritable by forked children."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _child(settings: ScorerSettings, sock: socket.socket, host: str, port: int, log_level: str) -> int:
    from spr.scorer.serve_config import serve
    from spr.shared.errors import SprError

    try:
        serve(settings, host=host, port=port, log_level=log_level, sockets=[sock])
    except SprError as exc:
        print(f"spr: error: {exc}", file=sys.stderr)
        return 2
    return 0


def serve_workers(settings: ScorerSettings, *, workers: int, host: str, port: int, log_level: str) -> int:
    """Serve with ``workers`` forked processes until SIGTERM/SIGINT; 0 when all stopped cleanly."""
    sock = bind(host, port)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = _child(settings, sock, host, port, log_level)
            except BaseException:
                logger.exception("scorer worker process failed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    sock.close()  # the children hold it
    logger.info("scorer serving on %s:%d with %d worker processes %s", host, port, workers, children)
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    worst = 0
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in children:
                continue
            children.remove(pid)
            code = os.waitstatus_to_exitcode(status)
            if not stopping:
                logger.error("scorer worker process %d exited with %d: stopping the others", pid, code)
                worst = max(worst, code if code > 0 else 1)
                stop_all()
            elif code not in (0, -signal.SIGTERM):
                worst = max(worst, code if code > 0 else 1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return worst
