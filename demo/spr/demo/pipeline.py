"""`spr demo`: the whole SPR pipeline on one CPU machine, as real processes talking through the queue.

Stages: synthetic data -> tiny models -> Redis (reused or private) -> `spr regions` -> `spr generator run`
and `spr scorer worker` side by side -> `spr train --from-queue --until-empty`. A stage is stopped once
its input is drained and its upstream has finished; every consumer acks only after its output is
written, so stopping (or killing) any stage at any moment loses nothing, and running the demo again on
the same work folder resumes from what the queue and the spool hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from spr.demo.stages import StageFailedError, StageProcess
from spr.shared.errors import SprError
from spr.shared.queue import (
    GROUP_GENERATORS,
    GROUP_SCORERS,
    LEDGER_SCORER,
    STREAM_CANDIDATES,
    STREAM_TASKS,
    Queue,
)
from spr.shared.redis_server import LocalRedis, is_reachable

logger = logging.getLogger(__name__)

POLL_S = 0.25


class DemoError(SprError):
    """The demo could not run; the message names the stage and its log."""


@dataclass(frozen=True)
class DemoConfig:
    """What `spr demo` runs. Paths are created under ``workdir``."""

    workdir: Path = Path("runs/demo")
    regions: int = 16
    seed: int = 0
    redis_url: str | None = None  # reused when reachable; otherwise a private server in workdir/redis
    samples_per_prompt: int = 2
    max_new_tokens: int = 48
    semantic_lambda: float = 0.8
    min_margin: float = 0.05
    stage_timeout_s: float = 1800.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def models_dir(self) -> Path:
        return self.workdir / "models"

    @property
    def train_dir(self) -> Path:
        return self.workdir / "train"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"


@dataclass
class StageTiming:
    name: str
    wall_s: float


@dataclass
class DemoRun:
    """One demo run: owns Redis (if private) and the stage processes; drive it with the methods."""

    config: DemoConfig
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None
    timings: list[StageTiming] = field(default_factory=list)
    redis_url: str = ""
    _redis: LocalRedis | None = None
    _stages: dict[str, StageProcess] = field(default_factory=dict)

    # -- set-up ------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Data, models and Redis (in-process: they are set-up, not pipeline stages)."""
        from spr.shared.datasets.synthetic import write_synthetic_dataset
        from spr.shared.tiny import build_tiny_models

        with self._timed("data"):
            annotations = self.config.data_dir / "annotations.json"
            if not annotations.exists():
                write_synthetic_dataset(
                    self.config.data_dir, images=self.config.regions, seed=self.config.seed
                )
        with self._timed("models"):
            build_tiny_models(self.config.models_dir, seed=self.config.seed)
        self.redis_url = self._start_redis()

    def _start_redis(self) -> str:
        url = self.config.redis_url
        if url:
            parsed = urlparse(url)
            if is_reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379):
                logger.info("using the Redis at %s", url)
                return url
            raise DemoError(
                f"no Redis answers at {url}: start it, or leave --redis-url unset for a private one"
            )
        self._redis = LocalRedis(self.config.workdir / "redis", persistent=True)
        # A fixed port per work folder lets a rerun find the same (persisted) streams.
        port_file = self.config.workdir / "redis" / "port"
        if port_file.exists():
            self._redis.port = int(port_file.read_text())
        url = self._redis.start()
        port_file.write_text(str(self._redis.port))
        return url

    def queue(self) -> Queue:
        return Queue.from_url(self.redis_url)

    # -- stages ------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        c = self.config
        return {
            "SPR_REDIS_URL": self.redis_url,
            "SPR_DATA_ROOT": str(c.data_dir.resolve()),
            "SPR_GENERATOR_MODEL": str((c.models_dir / "qwen2vl").resolve()),
            "SPR_GENERATOR_SAMPLES_PER_PROMPT": str(c.samples_per_prompt),
            "SPR_GENERATOR_MAX_NEW_TOKENS": str(c.max_new_tokens),
            "SPR_GENERATOR_SEED": str(c.seed),
            "SPR_SCORER_SEMANTIC_MODEL": str((c.models_dir / "clip").resolve()),
            "SPR_SCORER_LAMBDA": str(c.semantic_lambda),
            "SPR_SCORER_MIN_MARGIN": str(c.min_margin),
            # Short visibility timeouts: a killed stage's entries come back within seconds.
            "SPR_QUEUE_VISIBILITY_TIMEOUT_S": "10",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **c.extra_env,
        }

    def start(self, name: str) -> StageProcess:
        argv = self._argv(name)
        proc = StageProcess(name, argv, self.env(), self.config.logs_dir / f"{name}.log").start()
        self._stages[name] = proc
        return proc

    def _argv(self, name: str) -> list[str]:
        c = self.config
        if name == "regions":
            return [
                "regions",
                "--annotations",
                str(c.data_dir / "annotations.json"),
                "--redis-url",
                self.redis_url,
                "--seed",
                str(c.seed),
            ]
        if name == "generator":
            return ["generator", "run"]
        if name == "scorer":
            return ["scorer", "worker"]
        if name == "trainer":
            return [
                "train",
                "--config",
                str(trainer_config_path()),
                "--model",
                str((c.models_dir / "qwen2vl").resolve()),
                "--output-dir",
                str(c.train_dir.resolve()),
                "--from-queue",
                "--until-empty",
            ]
        raise ValueError(f"unknown stage {name!r}")

    def stage(self, name: str) -> StageProcess:
        return self._stages[name]

    def run_regions(self) -> int:
        """Publish the region tasks; returns how many tasks the stream holds."""
        with self._timed("regions"):
            proc = self.start("regions")
            self._wait_exit(proc)
        return self.stream_length(STREAM_TASKS)

    def run_generate_and_score(self) -> None:
        """Generator and scorer side by side; each is stopped once its input is drained."""
        total = self.stream_length(STREAM_TASKS)
        started = time.monotonic()
        generator = self._ensure_running("generator")
        scorer = self._ensure_running("scorer")
        generator_done = False
        with self.queue() as q:
            while True:
                # A stage we stopped may die of the SIGTERM itself (e.g. before its handler is set up,
                # when a rerun finds its input already drained): only an unasked exit is a failure.
                for proc in (scorer,) if generator_done else (generator, scorer):
                    if proc.poll() not in (None, 0):
                        raise DemoError(f"stage {proc.name} failed; see {proc.log_path}:\n{proc.tail()}")
                groups = q.outcomes(LEDGER_SCORER)
                scored = sum(groups.values())
                self.progress("generate", self.stream_length(STREAM_CANDIDATES), total)
                self.progress("score", scored, total)
                if not generator_done and self.drained(q, STREAM_TASKS, GROUP_GENERATORS):
                    generator.stop()
                    generator_done = True
                    self.timings.append(StageTiming("generator", time.monotonic() - started))
                if generator_done and self.drained(q, STREAM_CANDIDATES, GROUP_SCORERS):
                    scorer.stop()
                    self.timings.append(StageTiming("scorer", time.monotonic() - started))
                    return
                if time.monotonic() - started > self.config.stage_timeout_s:
                    raise DemoError(
                        f"generation and scoring did not finish in {self.config.stage_timeout_s:.0f} s"
                    )
                time.sleep(POLL_S)  # polling the queue's state; the stages run on their own

    def run_trainer(self) -> None:
        with self._timed("trainer"):
            proc = self.start("trainer")
            self._wait_exit(proc)

    def _ensure_running(self, name: str) -> StageProcess:
        proc = self._stages.get(name)
        if proc is None or not proc.running:
            proc = self.start(name)
        return proc

    def _wait_exit(self, proc: StageProcess) -> None:
        deadline = time.monotonic() + self.config.stage_timeout_s
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.stop()
                raise DemoError(f"stage {proc.name} did not finish in {self.config.stage_timeout_s:.0f} s")
            time.sleep(POLL_S)
        try:
            proc.check()
        except StageFailedError as exc:
            raise DemoError(str(exc)) from exc

    def stream_length(self, stream: str) -> int:
        with self.queue() as q:
            status = q.status([stream])
        return status.streams[0].length if status.streams else 0

    @staticmethod
    def drained(q: Queue, stream: str, group: str) -> bool:
        """Every entry of ``stream`` delivered to ``group`` and acknowledged."""
        status = q.status([stream])
        for s in status.streams:
            for g in s.groups:
                if g.name == group:
                    return g.pending == 0 and g.lag == 0
        return False

    # -- tear-down ---------------------------------------------------------------------------------

    def stop_all(self) -> None:
        for proc in reversed(list(self._stages.values())):
            proc.stop()
        if self._redis is not None:
            self._redis.stop()
            self._redis = None

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.timings.append(StageTiming(name, time.monotonic() - start))


def trainer_config_path() -> Path:
    """The tiny CPU trainer config shipped in the repository (trainer/configs/tiny-cpu.yaml)."""
    import spr.trainer

    for base in spr.trainer.__path__:
        candidate = Path(base).resolve().parents[1] / "configs" / "tiny-cpu.yaml"
        if candidate.exists():
            return candidate
    raise DemoError("trainer/configs/tiny-cpu.yaml not found: run the demo from a checkout of the repository")
