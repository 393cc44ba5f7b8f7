"""Throughput of the generator: tasks/s, samples/s, tokens/s as a log line and Prometheus metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram, start_http_server
from spr.shared.schemas import CandidateGroup

logger = logging.getLogger(__name__)

TASKS = Counter("spr_generator_tasks_total", "Region tasks turned into candidate groups.")
SAMPLES = Counter("spr_generator_samples_total", "Candidate descriptions generated.")
TOKENS = Counter("spr_generator_tokens_total", "Tokens generated.")
PARSE_PROBLEMS = Counter("spr_generator_parse_problems_total", "Parse problems found in generated text.")
TASK_SECONDS = Histogram(
    "spr_generator_task_seconds",
    "Wall time to turn one task into a candidate group (prompting, generation, parsing, publishing).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)


def serve_metrics(port: int) -> None:
    """Expose the default Prometheus registry on ``port`` (a daemon thread)."""
    start_http_server(port)
    logger.info("Prometheus metrics on :%d/metrics", port)


@dataclass
class Throughput:
    """Running totals since start; logs a rate line every ``log_every`` tasks. Thread-safe."""

    log_every: int = 10
    tasks: int = 0
    samples: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, *, samples: int, tokens: int, problems: int, seconds: float) -> None:
        """Count one finished task with its ``samples`` candidates and ``tokens`` generated tokens."""
        TASKS.inc()
        SAMPLES.inc(samples)
        TOKENS.inc(tokens)
        PARSE_PROBLEMS.inc(problems)
        TASK_SECONDS.observe(seconds)
        with self._lock:
            self.tasks += 1
            self.samples += samples
            self.tokens += tokens
            due = self.tasks % self.log_every == 0
        if due:
            logger.info("%s", self.summary())

    def record_groups(self, groups: Sequence[CandidateGroup], seconds: float) -> None:
        """Count finished candidate groups that took ``seconds`` together."""
        for group in groups:
            self.record(
                samples=len(group.candidates),
                tokens=sum(candidate.tokens for candidate in group.candidates),
                problems=sum(len(candidate.problems) for candidate in group.candidates),
                seconds=seconds / len(groups),
            )

    def rates(self) -> tuple[float, float, float]:
        """(tasks/s, samples/s, tokens/s) since start."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return self.tasks / elapsed, self.samples / elapsed, self.tokens / elapsed

    def summary(self) -> str:
        tasks_s, samples_s, tokens_s = self.rates()
        return (
            f"{self.tasks} tasks, {self.samples} samples, {self.tokens} tokens: "
            f"{tasks_s:.2f} tasks/s, {samples_s:.2f} samples/s, {tokens_s:.1f} tokens/s"
        )
