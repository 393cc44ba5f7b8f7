"""``spr scorer serve`` and ``spr scorer worker``: settings from the ``SPR_*`` environment.

Only argparse is imported at module level; the service's heavy imports happen in the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``scorer serve`` and ``scorer worker`` to the ``spr`` command."""
    parser = subparsers.add_parser(
        "scorer",
        help="score candidate descriptions: HTTP service or queue worker",
        description="The SPR scorer. Configured by SPR_* environment variables (SPR_SCORER_SEMANTIC_MODEL "
        "= a local CLIP folder or 'none', SPR_DATA_ROOT, SPR_REDIS_URL, SPR_SCORER_AUTH, "
        "SPR_SCORER_API_KEY, ...).",
    )
    commands = parser.add_subparsers(dest="scorer_command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="serve POST /score, /healthz, /readyz, /metrics over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes, one model each, sharing the port (default 1; CPU hosts: up to one per core)",
    )
    serve.set_defaults(handler=serve_command)
    from spr.cli.flags import attach_settings
    from spr.scorer.settings import ScorerSettings

    attach_settings(serve, ScorerSettings)

    worker = commands.add_parser(
        "worker", help="turn candidate groups (spr:candidates) into pairs (spr:pairs)"
    )
    worker.add_argument("--max-items", type=int, default=None, metavar="N", help="exit after N groups")
    worker.add_argument(
        "--idle-exit", type=float, default=None, metavar="S", help="exit after S seconds without any group"
    )
    worker.add_argument(
        "--metrics-port", type=int, default=None, metavar="P", help="serve Prometheus metrics on this port"
    )
    worker.set_defaults(handler=worker_command)
    attach_settings(worker, ScorerSettings)

    run = commands.add_parser(
        "run",
        help="file mode: score a candidates jsonl into a pairs jsonl (no Redis, no HTTP)",
        description="Score the candidate groups `spr generator run --tasks T --out C` wrote and append "
        "the preference pairs to --out (the file `spr train --dataset` takes); each group's outcome goes "
        "to <out>.outcomes.jsonl. Rerunning resumes. Models and options from SPR_* as for the worker.",
    )
    run.add_argument("--candidates", type=Path, required=True, help="jsonl of candidate groups")
    run.add_argument("--out", type=Path, required=True, help="jsonl the preference pairs are appended to")
    run.add_argument("--max-groups", type=int, default=None, metavar="N", help="stop after N groups")
    run.set_defaults(handler=run_command)
    attach_settings(run, ScorerSettings)


def serve_command(args: argparse.Namespace) -> int:
    from spr.cli.flags import settings_overrides
    from spr.scorer.serve_config import serve
    from spr.scorer.settings import ScorerSettings
    from spr.shared.errors import SprError

    if args.workers < 1:
        raise SprError(f"--workers must be at least 1 (got {args.workers})")
    settings = ScorerSettings.from_env(**settings_overrides(args, ScorerSettings))
    settings.http_api_key()  # auth misconfigured: refuse before loading any model
    if args.workers > 1:
        from spr.scorer.prefork import serve_workers

        return serve_workers(
            settings, workers=args.workers, host=args.host, port=args.port, log_level=args.log_level
        )
    serve(settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def worker_command(args: argparse.Namespace) -> int:
    import signal
    import threading

    from prometheus_client import start_http_server
    from spr.cli.flags import settings_overrides
    from spr.scorer.heap import prepare_gc_for_serving
    from spr.scorer.images import pil_pixel_limit
    from spr.scorer.loading import load_scorer
    from spr.scorer.settings import ScorerSettings
    from spr.scorer.telemetry import ScorerMetrics
    from spr.scorer.worker import run_scorer_worker

    settings = ScorerSettings.from_env(**settings_overrides(args, ScorerSettings))
    metrics = ScorerMetrics()
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, registry=metrics.registry)
    scorer = load_scorer(settings)
    prepare_gc_for_serving()
    stop = threading.Event()
    # SIGTERM/SIGINT finish the group in hand, then stop; restored afterwards (tests call this in-process).
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with pil_pixel_limit(settings.scorer_max_image_pixels):
            stats = run_scorer_worker(
                settings,
                scorer=scorer,
                metrics=metrics,
                stop=stop,
                max_items=args.max_items,
                idle_exit_s=args.idle_exit,
            )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f"scored {stats.processed} groups, {stats.failed} failed, {stats.dead_lettered} dead-lettered")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from spr.cli.flags import settings_overrides
    from spr.scorer.filemode import outcomes_path, score_file
    from spr.scorer.heap import prepare_gc_for_serving
    from spr.scorer.images import pil_pixel_limit
    from spr.scorer.loading import load_scorer
    from spr.scorer.settings import ScorerSettings
    from spr.shared.errors import SprError

    if args.max_groups is not None and args.max_groups < 1:
        raise SprError("--max-groups must be a positive number of groups")
    if not args.candidates.is_file():
        raise SprError(
            f"--candidates {args.candidates} is not a file: pass the jsonl that "
            "`spr generator run --tasks ... --out FILE` wrote"
        )
    settings = ScorerSettings.from_env(**settings_overrides(args, ScorerSettings))
    scorer = load_scorer(settings)
    prepare_gc_for_serving()
    with pil_pixel_limit(settings.scorer_max_image_pixels):
        stats = score_file(settings, args.candidates, args.out, scorer=scorer, max_groups=args.max_groups)
    print(f"{stats.line()}; pairs in {args.out}, outcomes in {outcomes_path(args.out)}")
    return 1 if stats.failed else 0
