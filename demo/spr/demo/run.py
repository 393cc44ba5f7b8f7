"""Run the demo from start to summary, with progress bars and a clean stop on Ctrl-C."""

from __future__ import annotations

import json
import logging
import time

from spr.demo.pipeline import DemoConfig, DemoRun
from spr.demo.summary import DemoSummary, collect_summary
from spr.demo.viewer import write_report
from spr.shared.queue import LEDGER_SCORER, STREAM_PAIRS
from spr.shared.schemas import PreferencePair
from tqdm import tqdm

logger = logging.getLogger(__name__)


def run_demo(config: DemoConfig) -> DemoSummary:
    """Run every stage; returns the summary (also written to ``workdir/summary.json``).

    On Ctrl-C (KeyboardInterrupt) every child is stopped with SIGTERM before the exception goes on;
    the queue keeps whatever was not acknowledged, so running the demo again resumes.
    """
    config.workdir.mkdir(parents=True, exist_ok=True)
    bars: dict[str, tqdm] = {}  # type: ignore[type-arg]

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:<9}", unit="task", position=len(bars))
        if (bar.n, bar.total) != (done, total):
            bar.total = total
            bar.update(done - bar.n)

    run = DemoRun(config, progress=progress)
    started = time.monotonic()
    try:
        logger.info("demo: preparing data, tiny models and Redis in %s", config.workdir)
        run.prepare()
        tasks = run.run_regions()
        logger.info("demo: %d region tasks on the queue (%s)", tasks, run.redis_url)
        run.run_generate_and_score()
        for bar in bars.values():
            bar.close()
        logger.info("demo: training (DPO, LoRA) on the pairs ...")
        run.run_trainer()
        with run.queue() as q:
            summary = collect_summary(
                q,
                config.train_dir,
                LEDGER_SCORER,
                semantic_lambda=config.semantic_lambda,
                min_margin=config.min_margin,
            )
            pairs = [pair for _, pair in q.items(STREAM_PAIRS, PreferencePair)]
        summary.wall_s = {t.name: t.wall_s for t in run.timings}
        summary.wall_s["total"] = time.monotonic() - started
        report = write_report(pairs, config.data_dir, config.workdir / "report.html", title="SPR demo pairs")
        summary.report = str(report)
        (config.workdir / "summary.json").write_text(summary.as_json())
        return summary
    finally:
        for bar in bars.values():
            bar.close()
        run.stop_all()
        logger.debug("demo stages stopped: %s", json.dumps([t.name for t in run.timings]))
