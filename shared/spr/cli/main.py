"""The `spr` command: one console entry point for every stage.

Each subcommand lives in its own light module exposing ``register(subparsers)``; those modules import
only argparse at module level and defer heavy imports (torch, transformers, redis) to the handler, so
``spr --help`` stays instant. Service commands live beside their service (``spr.scorer.cli`` ...).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from spr.shared.errors import SprError

# Modules that contribute subcommands. A service whose distribution group is not installed still
# registers its commands (they are plain argparse), and fails with a clear message when run.
COMMAND_MODULES: tuple[str, ...] = (
    "spr.cli.synth",
    "spr.cli.regions",
    "spr.cli.queue",
    "spr.cli.models",
    "spr.scorer.cli",
    "spr.generator.cli",
    "spr.trainer.cli",
    "spr.reward.cli",
    "spr.eval.cli",
    "spr.bench.cli",
    "spr.demo.cli",
    "spr.demo.loop_cli",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spr",
        allow_abbrev=False,
        description="Spatial Preference Rewarding: region tasks -> grounded descriptions -> scored "
        "preference pairs -> DPO.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that part of the project is not present in this checkout
            raise
        module.register(subparsers)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Turn argparse's prefix matching off in every (sub)command: with dozens of settings flags, a
    prefix (`--out` for `--output-dir`) would silently pick an option the user did not name."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except SprError as exc:
        print(f"spr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
