"""The scorer under 200 concurrent clients, with its limits (defaults) and without (every bound raised
out of reach), measured with ``wrk`` (C, from apt) so that the client's CPU is not the measurement.

For each scenario ``spr scorer serve`` runs in a subprocess; wrk holds 200 keep-alive connections and
posts the same /score body for ``--duration`` seconds after a few warm-up requests. Printed per run:
requests/s, p50 and p99 latency (wrk's), non-2xx answers, socket errors and the server's peak
resident memory (VmHWM). The ratio limits / unlimited (same body, same machine, same run) is the
cost of the limits.

Scenarios: ``loc`` (localization only, 8 candidates x 5 boxes, 5 objects: parsing and IoU on the CPU
pool) and ``clip`` (the tiny CLIP, lambda 0.8: image decoding under the pixel budget, micro-batched
forwards) on a 1280 x 960 PNG.

    apt-get install wrk
    .venv/bin/python bench/scorer_limits.py [--duration 10] [--connections 200] [--scenarios loc clip]

Numbers come from whatever CPUs this runs on, shared with wrk; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw
from spr.scorer.process_server import ScorerProcess
from spr.shared.tiny import build_tiny_models

WIDTH, HEIGHT = 1280, 960
OBJECTS = [
    (100, 100, 400, 380),
    (500, 120, 800, 500),
    (850, 400, 1200, 900),
    (60, 600, 300, 920),
    (400, 600, 700, 850),
]
UNLIMITED = {
    "SPR_SCORER_MAX_OBJECTS": str(10**9),
    "SPR_SCORER_MAX_BOX_PAIRS": str(10**15),
    "SPR_SCORER_MAX_CANDIDATES": str(10**9),
    "SPR_SCORER_MAX_PIXELS_IN_FLIGHT": str(10**12),
    "SPR_SCORER_DECODE_MAX_SIDE": str(10**6),
    "SPR_SCORER_MAX_CONNECTIONS": str(10**6),
    "SPR_SCORER_HEADER_TIMEOUT_S": str(10**6),
    "SPR_SCORER_BODY_TIMEOUT_S": str(10**6),
}


def body(lam: float) -> dict[str, Any]:
    def ferret(box: tuple[int, int, int, int], shift: int) -> str:
        x1, y1, x2, y2 = box
        grid = [
            round(x1 / WIDTH * 1000) + shift,
            round(y1 / HEIGHT * 1000),
            round(x2 / WIDTH * 1000),
            round(y2 / HEIGHT * 1000),
        ]
        return f"a shape {grid}"

    candidates = [
        {"id": f"c{i}", "text": " and ".join(ferret(box, shift=i * 3) for box in OBJECTS)} for i in range(8)
    ]
    return {
        "image": {"path": "scene.png"},
        "region": [0, 0, WIDTH, HEIGHT],
        "objects": [{"label": "shape", "box": list(box)} for box in OBJECTS],
        "candidates": candidates,
        "format": "ferret",
        "options": {"lambda": lam},
    }


def wrk_script(path: Path, payload: dict[str, Any]) -> Path:
    text = json.dumps(payload)
    path.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{text}]==]\n'
    )
    return path


def to_ms(value: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if found is None:
        raise ValueError(f"cannot read wrk's latency {value!r}")
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, script: Path, connections: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration:.0f}s",
            "--timeout",
            "60s",  # queueing at 200 connections exceeds wrk's default of 2 s: count it as latency
            "--latency",
            "-s",
            str(script),
            url + "/score",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 120,
    ).stdout
    if "Latency Distribution" not in out:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(n) for n in re.findall(r"\d+", errors.group(1)))) if errors else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--warmup", type=int, default=20, help="requests (one at a time) before each run")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--scenarios", nargs="+", choices=["loc", "clip"], default=["loc", "clip"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install wrk")

    with tempfile.TemporaryDirectory(prefix="spr-scorer-limits-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        image = Image.new("RGB", (WIDTH, HEIGHT), (40, 40, 40))
        for box in OBJECTS:
            ImageDraw.Draw(image).rectangle(box, fill=(200, 60, 60))
        image.save(root / "scene.png")
        clip = build_tiny_models(Path(tmp) / "models", seed=0).clip if "clip" in args.scenarios else None
        common = {"SPR_DATA_ROOT": str(root), "SPR_DEVICE": "cpu", "SPR_SCORER_TORCH_THREADS": "1"}
        print(
            f"wrk: {args.connections} connections, 2 threads, {args.duration:.0f} s per run after "
            f"{args.warmup} warm-up requests; server: spr scorer serve (1 process)"
        )
        header = f"{'scenario':<8} {'config':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        print(f"{header} {'non-2xx':>8} {'sock err':>8} {'peak MiB':>9}")
        for scenario in args.scenarios:
            model = (
                {"SPR_SCORER_SEMANTIC_MODEL": "none"}
                if scenario == "loc"
                else {"SPR_SCORER_SEMANTIC_MODEL": str(clip)}
            )
            payload = body(0.0 if scenario == "loc" else 0.8)
            script = wrk_script(Path(tmp) / f"{scenario}.lua", payload)
            results = {}
            for config, extra in (("limits", {}), ("unlimited", UNLIMITED)):
                env = {**common, **model, **extra}
                with ScorerProcess(env, Path(tmp) / f"{scenario}-{config}.log") as server:
                    # Warm-up one request at a time: a wrk warm-up would leave the server a backlog of
                    # requests whose connections wrk closed.
                    for _ in range(args.warmup):
                        httpx.post(server.url + "/score", json=payload, timeout=60).raise_for_status()
                    result = run_wrk(server.url, script, args.connections, args.duration)
                    result["peak_mib"] = server.memory_mib("VmHWM")
                results[config] = result
                print(
                    f"{scenario:<8} {config:<10} {result['rps']:>8.1f} {result['p50_ms']:>8.1f} "
                    f"{result['p99_ms']:>8.1f} {result['non_2xx']:>8.0f} {result['socket_errors']:>8.0f} "
                    f"{result['peak_mib']:>9.0f}"
                )
            limited, free = results["limits"], results["unlimited"]
            ratios = {key: limited[key] / free[key] for key in ("rps", "p50_ms", "p99_ms", "peak_mib")}
            print(
                f"{scenario:<8} ratio limits/unlimited: req/s {ratios['rps']:.2f}, "
                f"p50 {ratios['p50_ms']:.2f}, p99 {ratios['p99_ms']:.2f}, peak RSS {ratios['peak_mib']:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
