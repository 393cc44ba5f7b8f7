"""``spr generator run``: the generator worker (queue mode, or file mode with --tasks/--out).

Settings come from the environment (``SPR_*``, see spr.generator.settings); heavy imports wait for the
handler so ``spr --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generator",
        help="generate grounded region descriptions (candidate groups)",
        description="The SPR generator: region tasks -> k sampled grounded descriptions per prompt.",
    )
    commands = parser.add_subparsers(dest="generator_command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="consume spr:tasks and publish candidate groups to spr:candidates (or --tasks/--out files)",
        description="Settings come from SPR_* environment variables: SPR_REDIS_URL, SPR_DATA_ROOT, "
        "SPR_GENERATOR_ENGINE (transformers|vllm|vllm_offline), SPR_GENERATOR_MODEL (local folder), "
        "SPR_GENERATOR_VLLM_URL, SPR_GENERATOR_SAMPLES_PER_PROMPT, SPR_GENERATOR_TEMPERATURE, ... "
        "(see spr.generator.settings).",
    )
    run.add_argument("--tasks", type=Path, help="jsonl file of RegionTasks (file mode: no Redis)")
    run.add_argument("--out", type=Path, help="jsonl file the candidate groups are appended to (file mode)")
    run.add_argument("--max-tasks", type=int, default=None, metavar="N", help="stop after N tasks")
    run.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="S",
        help="queue mode: exit after S seconds without a task (default: run until stopped)",
    )
    run.set_defaults(handler=_run)
    from spr.cli.flags import attach_settings
    from spr.generator.settings import GeneratorSettings

    attach_settings(run, GeneratorSettings)


def _run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from spr.cli.flags import settings_overrides
    from spr.generator.batch import run_file
    from spr.generator.settings import GeneratorSettings, load_settings
    from spr.generator.worker import run_queue
    from spr.shared.errors import SprError

    if (args.tasks is None) != (args.out is None):
        raise SprError("--tasks and --out go together (file mode); give both or neither (queue mode)")
    if args.max_tasks is not None and args.max_tasks < 1:
        raise SprError("--max-tasks must be a positive number of tasks")
    settings = load_settings(**settings_overrides(args, GeneratorSettings))
    if args.tasks is not None:
        from spr.shared.operator_checks import check_writable_file

        check_writable_file(args.out, "--out")
        stats = run_file(settings, args.tasks, args.out, max_tasks=args.max_tasks)
        print(f"wrote {stats.written} candidate groups to {args.out} ({stats.skipped} already there)")
        return 0
    stop = threading.Event()
    # SIGTERM (docker stop) finishes the task in hand, then exits; an unfinished task stays pending.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker_stats = run_queue(settings, max_tasks=args.max_tasks, idle_exit_s=args.idle_exit, stop=stop)
    print(
        f"generator: {worker_stats.processed} tasks done, {worker_stats.failed} failed (will retry), "
        f"{worker_stats.dead_lettered} dead-lettered"
    )
    return 0
