"""Running the app under uvicorn inside this process, on a thread (benchmarks, tests, the demo).

``spr scorer serve`` runs uvicorn in the foreground; this is for callers that need the server next to
them and its address back, e.g. a load generator in the same script.
"""

from __future__ import annotations

import threading

import uvicorn
from fastapi import FastAPI
from spr.scorer.serve_config import uvicorn_config
from spr.scorer.settings import ScorerSettings
from spr.shared.processes import ChildServer, free_port


class ServerThread(ChildServer):
    """``with ServerThread(app, settings) as server:`` serves ``app`` on ``server.url`` until the block ends.

    For callers that need the server next to them (a load generator in the same script, tests); with
    ``settings`` it runs exactly :func:`spr.scorer.serve_config.uvicorn_config`, without them
    uvicorn's defaults. :meth:`start` returns once the server accepts requests (models loaded).
    """

    poll_s = 0.01

    def __init__(
        self,
        app: FastAPI,
        settings: ScorerSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        if settings is None:
            config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="on")
        else:
            config = uvicorn_config(settings, app, host=host, port=self.port)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="spr-scorer-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _launch(self) -> None:
        self._thread.start()

    def _ready(self) -> bool:
        return bool(self.server.started)

    def _running(self) -> bool:
        return self._thread.is_alive()

    def _start_failed(self, *, timed_out: bool, timeout_s: float) -> Exception:
        if timed_out:
            return TimeoutError(f"the scorer server did not start within {timeout_s} s")
        return RuntimeError("the scorer server stopped during start-up (see its log)")

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
