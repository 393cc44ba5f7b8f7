"""Per-request CPU breakdown of the scorer from py-spy's collapsed stacks (``--format raw``).

``bench/scorer_load.py --profile DIR`` samples the server with ``py-spy record --gil`` during each
measured window: every sample is the stack of the thread holding the GIL, i.e. the Python work the
server does (native work that releases the GIL, such as torch forwards, is not sampled). Each sample is
put in the category of its innermost frame that matches a rule below; the shares, times the server's
CPU per request, give milliseconds per request by category.

    .venv/bin/python bench/scorer_profile.py DIR/localization-only.wrk.txt --cpu-ms 2.9
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# (category, pattern on "function (file:line)"), tried for each frame from the innermost outwards.
RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "thread hand-offs (executor, self-pipe wake-ups)",
        re.compile(
            r"_write_to_self|_read_from_self|run_in_executor|call_soon_threadsafe|wrap_future|_chain_future"
            r"|_copy_future_state|_set_state|concurrent/futures/|threading\.py|queue\.py"
        ),
    ),
    ("JSON decode + validate (pydantic)", re.compile(r"model_validate_json|ScoreRequest|shared/schemas\.py")),
    ("response encoding", re.compile(r"model_dump_json|starlette/responses\.py")),
    ("image open / decode", re.compile(r"scorer/images\.py|PIL/|pathlib\.py|posixpath")),
    (
        "parse / S_loc / refine",
        re.compile(r"shared/formats/|shared/boxes\.py|scorer/scoring\.py|scorer/pairing"),
    ),
    (
        "model forwards (Python side)",
        re.compile(r"scorer/semantic\.py|scorer/detector\.py|torch/|transformers/"),
    ),
    ("micro-batching", re.compile(r"scorer/batching\.py")),
    ("metrics", re.compile(r"prometheus_client/|scorer/telemetry\.py")),
    ("HTTP parsing (h11 / httptools)", re.compile(r"h11/|h11_impl|httptools|scorer/serve_config\.py")),
    (
        "ASGI: FastAPI / Starlette routing, middleware",
        re.compile(
            r"fastapi/|starlette/|uvicorn/middleware|scorer/middleware\.py|scorer/router\.py|serving\.py"
        ),
    ),
    ("event loop, sockets", re.compile(r"asyncio/|selectors\.py|uvloop")),
]
OTHER = "other"


def categorize(stack: str) -> str:
    """The category of one collapsed stack ("thread; frame; frame; ..."; innermost last)."""
    for frame in reversed(stack.split(";")[1:]):
        for name, pattern in RULES:
            if pattern.search(frame):
                return name
    return OTHER


def breakdown(path: Path) -> dict[str, float]:
    """Share of GIL-holding samples per category (sums to 1), from a py-spy raw file."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[categorize(stack)] += int(count)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


def print_breakdown(path: Path, cpu_ms: float | None) -> None:
    for name, share in breakdown(path).items():
        ms = f"{share * cpu_ms:6.2f} ms" if cpu_ms is not None else ""
        print(f"    {share:6.1%} {ms}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stacks", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--cpu-ms", type=float, default=None, help="server CPU ms per request, to scale")
    args = parser.parse_args()
    print_breakdown(args.stacks, args.cpu_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
