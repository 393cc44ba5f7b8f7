"""Load benchmark of the scorer's HTTP service: concurrent clients posting regions of 8 candidates.

The server is the real thing, ``spr scorer serve`` in a subprocess on a free port (its own
interpreter). Two load generators (``--client``):

- ``wrk`` (the default when ``wrk`` is on PATH; ``apt-get install wrk``): C, driven by a Lua script
  that cycles through 16 pre-built request bodies. On a machine with 2+ CPUs, wrk is pinned to one core
  (``taskset``) and the server to another, so the client's CPU is not the measurement.
- ``python``: asyncio + httpx clients in this process (for machines without wrk; the clients' CPU
  then competes with the server's, so it measures less of the server).

Scenarios, each after a warm-up:

- localization-only: SPR_SCORER_SEMANTIC_MODEL=none, lambda = 0;
- tiny CLIP: the tiny offline CLIP (``spr models tiny``), lambda = 0.8 (crop + local + text encoders).

Printed per scenario: candidates/s, p50/p99 latency and the server's CPU time per request (user +
system from /proc/<pid>/stat over the measured window, divided by the requests answered), which is
robust to other work on the machine where wall-clock throughput is not. Then the raw batched model
throughput is measured in this process, with the server stopped and on the server's core: the same
CLIP calls the scorer makes (``embed_regions`` on a batch of regions, ``embed_texts`` on their 8 texts
each), back to back. The ratios scorer / raw (wall clock, and per CPU second) say how much of the
model's throughput the service delivers through HTTP, parsing and micro-batching.

    .venv/bin/python bench/scorer_load.py [--client wrk|python] [--clients 32] [--duration 10]

Numbers are from whatever CPUs this runs on; on a shared machine wall-clock figures are noisy (the
load average is printed with them), CPU time per request much less so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from PIL import Image, ImageDraw
from scorer_profile import print_breakdown
from spr.scorer.heap import prepare_gc_for_serving, set_heap_top_pad
from spr.scorer.process_server import ScorerProcess
from spr.scorer.semantic import SemanticScorer
from spr.scorer.settings import ScorerSettings
from spr.shared import formats
from spr.shared.boxes import BoxT
from spr.shared.schemas import Size
from spr.shared.tiny import build_tiny_models

CANDIDATES = 8
IMAGE_SIZE = (256, 256)
IMAGES = 4
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def write_images(root: Path, rng: np.random.Generator) -> list[tuple[str, list[BoxT]]]:
    """A few PNGs with 5 coloured shapes each; returns (relative path, GT boxes)."""
    out = []
    for index in range(IMAGES):
        image = Image.new("RGB", IMAGE_SIZE, (40, 40, 40))
        draw = ImageDraw.Draw(image)
        boxes: list[BoxT] = []
        for k in range(5):
            x1, y1 = rng.uniform(0, 190), rng.uniform(0, 190)
            box = (float(x1), float(y1), float(x1 + rng.uniform(20, 60)), float(y1 + rng.uniform(20, 60)))
            boxes.append(box)
            draw.rectangle(box, fill=(50 * k % 255, 200 - 30 * k, 90 + 30 * k))
        name = f"bench-{index}.png"
        image.save(root / name)
        out.append((name, boxes))
    return out


def make_bodies(images: list[tuple[str, list[BoxT]]], rng: np.random.Generator, lam: float) -> list[bytes]:
    """Pre-serialized POST /score bodies: each region has 8 ferret candidates with jittered boxes."""
    size = Size(width=IMAGE_SIZE[0], height=IMAGE_SIZE[1])
    bodies = []
    for variant in range(16):
        name, gt = images[variant % len(images)]
        candidates = []
        for c in range(CANDIDATES):
            phrases = []
            for k, (x1, y1, x2, y2) in enumerate(gt):
                if rng.random() < 0.2:
                    continue  # a missed object
                j = rng.normal(0, 4 + 2 * c, size=4)
                box = (max(x1 + j[0], 0.0), max(y1 + j[1], 0.0), min(x2 + j[2], 255.0), min(y2 + j[3], 255.0))
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    continue
                phrases.append((f"a {COLOURS[k]} block", [box]))
            text = (
                "The region shows " + formats.render(phrases, "ferret", image_size=size) + f" (sample {c})."
            )
            candidates.append({"id": f"c{c}", "text": text})
        body = {
            "image": {"path": name},
            "region": [0, 0, IMAGE_SIZE[0], IMAGE_SIZE[1]],
            "objects": [{"label": f"{COLOURS[k]} block", "box": list(b)} for k, b in enumerate(gt)],
            "candidates": candidates,
            "format": "ferret",
            "options": {"lambda": lam},
        }
        bodies.append(json.dumps(body).encode())
    return bodies


def process_cpu_split_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds process ``pid`` has used so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of all of ``pid``'s threads so far (Linux /proc)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        for line in status.splitlines():
            if line.endswith("ctxt_switches:") or "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass(frozen=True)
class Cores:
    """Where the server (and the raw model run) and wrk run; None = no pinning (fewer than 2 CPUs)."""

    server: set[int] | None
    client: set[int] | None

    @classmethod
    def pick(cls) -> Cores:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            return cls(None, None)
        return cls({allowed[-1]}, {allowed[0]})

    @contextlib.contextmanager
    def on_server_core(self) -> Iterator[None]:
        """Run the block (and any process it starts: children inherit it) on the server's core."""
        if self.server is None:
            yield
            return
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.server)
        try:
            yield
        finally:
            os.sched_setaffinity(0, previous)


def start_server(env: dict[str, str], log: Path, cores: Cores) -> ScorerProcess:
    """``spr scorer serve`` with ``env``, pinned to the server core (its threads inherit the mask)."""
    server = ScorerProcess(env, log)
    with cores.on_server_core():
        server.start()
    return server


def wrk_lua(path: Path, bodies: list[bytes]) -> Path:
    """A wrk script that pre-formats one POST /score request per body and cycles through them."""
    literals = []
    for body in bodies:
        text = body.decode()
        if "]==]" in text:
            raise ValueError("a body contains the Lua long-bracket terminator")
        literals.append(f"[==[{text}]==]")
    path.write_text(
        "local bodies = {\n" + ",\n".join(literals) + "\n}\n"
        "local requests = {}\n"
        "local i = 0\n"
        "init = function(args)\n"
        "  for k, b in ipairs(bodies) do\n"
        '    requests[k] = wrk.format("POST", "/score", {["Content-Type"] = "application/json"}, b)\n'
        "  end\n"
        "end\n"
        "request = function()\n"
        "  i = i % #requests + 1\n"
        "  return requests[i]\n"
        "end\n"
    )
    return path


def start_profiler(pid: int, name: str, args: argparse.Namespace, cores: Cores) -> subprocess.Popen[bytes]:
    """py-spy sampling every thread of the server for the measured window (collapsed stacks, on the
    client core); ``bench/scorer_profile.py`` turns the file into a per-request breakdown."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    pin = [] if cores.client is None else ["taskset", "-c", ",".join(map(str, sorted(cores.client)))]
    out = args.profile / f"{name}.{args.client}.txt"
    argv = [*pin, spy, "record", "--pid", str(pid), "--duration", f"{args.duration:.0f}", "--rate", "250"]
    argv += ["--format", "raw", "--gil", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def to_ms(value: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if found is None:
        raise ValueError(f"cannot read wrk's latency {value!r}")
    number, unit = found.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk_load(url: str, script: Path, connections: int, duration_s: float, cores: Cores) -> dict[str, Any]:
    """One wrk thread (on the client core) holding ``connections`` keep-alive connections."""
    pin = [] if cores.client is None else ["taskset", "-c", ",".join(map(str, sorted(cores.client)))]
    argv = [*pin, "wrk", "-t1", f"-c{connections}", f"-d{duration_s:.0f}s", "--timeout", "30s", "--latency"]
    out = subprocess.run(
        [*argv, "-s", str(script), url + "/score"],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 120,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if total is None or p50 is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    sent = int(total.group(1))
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0
    window_s = to_ms(total.group(2) + total.group(3)) / 1000
    ok = sent - (int(bad.group(1)) if bad else 0)
    return {
        "requests": ok,
        "sent": sent,
        "errors": errors,
        "requests_per_s": ok / window_s,
        "candidates_per_s": ok * CANDIDATES / window_s,
        "p50_ms": to_ms(p50.group(1)),
        "p99_ms": to_ms(p99.group(1)),
    }


async def load(
    url: str, bodies: list[bytes], clients: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    """N clients post bodies in a loop; measures the window after the warm-up."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    started = time.perf_counter()
    measure_from = started + warmup_s
    stop_at = measure_from + duration_s
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        i = index
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            response = await http.post("/score", content=bodies[i % len(bodies)], headers=headers)
            t1 = time.perf_counter()
            i += 1
            sent += 1
            if t0 >= measure_from:
                if response.status_code == 200:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    window = time.perf_counter() - measure_from
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "sent": sent,
        "errors": errors,
        "requests_per_s": n / window,
        "candidates_per_s": n * CANDIDATES / window,
        "p50_ms": 1000 * statistics.median(latencies) if n else float("nan"),
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))] if n else float("nan"),
    }


def raw_model_throughput(
    clip_dir: Path, root: Path, bodies: list[bytes], regions_per_batch: int, seconds: float, threads: int
) -> tuple[float, float]:
    """Back-to-back batched CLIP calls (image side + texts) as the scorer makes them.

    Returns candidates/s (wall clock) and CPU milliseconds per candidate.
    """
    torch.set_num_threads(threads)  # as the server's SPR_SCORER_TORCH_THREADS
    clip = SemanticScorer.load(clip_dir, device="cpu")
    requests = [json.loads(b) for b in bodies]
    batches = []
    for start in range(0, len(requests), regions_per_batch):
        chunk = requests[start : start + regions_per_batch]
        regions = [(Image.open(root / r["image"]["path"]).convert("RGB"), tuple(r["region"])) for r in chunk]
        texts = [formats.strip_boxes(c["text"], "ferret") for r in chunk for c in r["candidates"]]
        batches.append((regions, texts))
    for regions, texts in batches:  # warm-up
        clip.embed_regions(regions)
        clip.embed_texts(texts)
    done = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for regions, texts in batches:
            clip.embed_regions(regions)
            clip.embed_texts(texts)
            done += len(texts)
    return done / (time.perf_counter() - started), 1000 * (time.process_time() - cpu_started) / done


def raw_localization_cpu_ms(root: Path, bodies: list[bytes], seconds: float, cores: Cores) -> float:
    """CPU ms per request of the scoring itself (``Scorer.plan`` + ``finish``: parse, S_loc, refine,
    pair), in this process on the server's core, bodies pre-validated and images pre-opened: what the
    service adds on top of this is its fixed cost per request."""
    from spr.scorer.scoring import Scorer, ScoringInput
    from spr.shared.scoring_api import ScoreRequest

    scorer = Scorer()
    inputs = []
    for body in bodies:
        request = ScoreRequest.model_validate_json(body)
        inputs.append(ScoringInput.of_request(request, Image.open(root / str(request.image.path))))
    done = 0
    with cores.on_server_core():
        started, cpu_started = time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            for one in inputs:
                scorer.finish(scorer.plan(one))
                done += 1
        return 1000 * (time.process_time() - cpu_started) / done


def run_scenario(
    name: str, env: dict[str, str], bodies: list[bytes], args: argparse.Namespace, cores: Cores, tmp: Path
) -> dict[str, Any]:
    """Start a server with ``env``, load it, stop it; prints and returns the measurements."""
    server = start_server(env, tmp / f"{name}.log", cores)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:  # warm-up, one request at a time
            for body in bodies * 2:
                http.post("/score", content=body, headers={"content-type": "application/json"})
        (user, system), client_cpu = process_cpu_split_s(server.pid), time.process_time()
        switches = context_switches(server.pid)
        load_before = load_average()
        profiler = None if args.profile is None else start_profiler(server.pid, name, args, cores)
        if args.client == "wrk":
            script = wrk_lua(tmp / f"{name}.lua", bodies)
            result = wrk_load(server.url, script, args.clients, args.duration, cores)
        else:
            result = asyncio.run(load(server.url, bodies, args.clients, args.duration, args.warmup))
            result["client_cpu_ms"] = 1000 * (time.process_time() - client_cpu) / result["sent"]
        user_after, system_after = process_cpu_split_s(server.pid)
        result["server_user_ms"] = 1000 * (user_after - user) / result["sent"]
        result["server_system_ms"] = 1000 * (system_after - system) / result["sent"]
        result["server_cpu_ms"] = result["server_user_ms"] + result["server_system_ms"]
        result["switches"] = (context_switches(server.pid) - switches) / result["sent"]
        if profiler is not None:
            profiler.wait(timeout=args.duration + 60)
            result["profile"] = args.profile / f"{name}.{args.client}.txt"
        result["load"] = f"{load_before} -> {load_average()}"
        result["batches"] = mean_batch_sizes(httpx.get(server.url + "/metrics").text)
    finally:
        server.stop()
    batches = ", ".join(f"{k} {v:.1f}" for k, v in result["batches"].items()) or "none"
    clients = f", clients {result['client_cpu_ms']:.2f} ms" if "client_cpu_ms" in result else ""
    print(
        f"{name:18s} {result['candidates_per_s']:8.0f} candidates/s  {result['requests_per_s']:7.1f} req/s  "
        f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}\n"
        f"{'':18s} CPU per request: server {result['server_cpu_ms']:.2f} ms (user "
        f"{result['server_user_ms']:.2f}, system {result['server_system_ms']:.2f}; "
        f"{result['switches']:.1f} thread context switches){clients}; "
        f"mean items per model forward: {batches}; load average {result['load']}"
    )
    if "profile" in result:
        print(f"{'':18s} where the server's CPU goes (py-spy, GIL holder; {result['profile']}):")
        print_breakdown(result["profile"], result["server_cpu_ms"])
    return result


def mean_batch_sizes(metrics: str) -> dict[str, float]:
    """Mean items per batched forward, by batcher, from the Prometheus text."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        for suffix, into in (("_sum", sums), ("_count", counts)):
            prefix = f'spr_scorer_batch_size{suffix}{{batcher="'
            if line.startswith(prefix):
                batcher = line[len(prefix) :].split('"', 1)[0]
                into[batcher] = float(line.rsplit(" ", 1)[1])
    return {k: sums[k] / counts[k] for k in sums if counts.get(k)}


def compare_with_raw(
    name: str,
    clip_dir: Path,
    root: Path,
    bodies: list[bytes],
    result: dict[str, Any],
    args: argparse.Namespace,
    cores: Cores,
) -> None:
    regions = max(1, args.batch_texts // CANDIDATES)
    with cores.on_server_core():
        raw, raw_cpu_ms = raw_model_throughput(
            clip_dir, root, bodies, regions, args.duration, args.torch_threads
        )
    print(
        f"{'raw ' + name:18s} {raw:8.0f} candidates/s  "
        f"(CPU per 8 candidates {raw_cpu_ms * CANDIDATES:.2f} ms; "
        f"{regions} regions + {regions * CANDIDATES} texts per forward pair, in this process on the "
        "server's core, server stopped)"
    )
    # Per CPU second as well: independent of how much of its core the machine's other processes leave
    # to the server.
    print(
        f"{'':18s} scorer / raw model throughput: {result['candidates_per_s'] / raw:.2f} (aim >= 0.8); "
        f"per CPU second: {raw_cpu_ms * CANDIDATES / result['server_cpu_ms']:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (default wrk when it is on PATH, else python)",
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="python client: unmeasured seconds before each"
    )
    parser.add_argument("--models", type=Path, default=None, help="tiny models folder (built if missing)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="SPR_SCORER_BATCH_MAX_WAIT_MS")
    parser.add_argument("--batch-texts", type=int, default=64, help="SPR_SCORER_BATCH_MAX_SIZE")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="SPR_SCORER_TORCH_THREADS, also used for the raw run"
    )
    parser.add_argument(
        "--heap-top-pad-mb",
        type=int,
        default=ScorerSettings.model_fields["scorer_heap_top_pad_mb"].default,
        help="SPR_SCORER_HEAP_TOP_PAD_MB, also applied to this process for the raw baselines "
        "(default: the setting's)",
    )
    parser.add_argument(
        "--cpu-threads", type=int, default=None, help="SPR_SCORER_CPU_THREADS (default: the setting's)"
    )
    parser.add_argument(
        "--medium-clip",
        action="store_true",
        help="also run a larger random CLIP (224 px, 6 vision layers) where the model cost dominates",
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=["loc", "clip"], default=["loc", "clip"], help="what to run"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the server with py-spy (pip install py-spy) during each window; stacks into DIR",
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk); or use --client python")
    cores = Cores.pick()
    # The raw baselines run in this process: the same heap slack and collector settings as the server,
    # or the ratios would compare a tuned server with an untuned model run.
    set_heap_top_pad(args.heap_top_pad_mb * 1024 * 1024)
    prepare_gc_for_serving()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="spr-scorer-bench-") as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        images = write_images(root, rng)
        models = build_tiny_models(args.models or Path(tmp) / "models", seed=0)
        common = {
            "SPR_DATA_ROOT": str(root),
            "SPR_DEVICE": "cpu",
            "SPR_SCORER_AUTH": "none",  # a local benchmark server
            "SPR_SCORER_BATCH_MAX_WAIT_MS": str(args.batch_wait_ms),
            "SPR_SCORER_BATCH_MAX_SIZE": str(args.batch_texts),
            "SPR_SCORER_BATCH_MAX_REGIONS": str(max(1, args.batch_texts // CANDIDATES)),
            "SPR_SCORER_TORCH_THREADS": str(args.torch_threads),
            "SPR_SCORER_HEAP_TOP_PAD_MB": str(args.heap_top_pad_mb),
            **({} if args.cpu_threads is None else {"SPR_SCORER_CPU_THREADS": str(args.cpu_threads)}),
        }
        if cores.server is None or cores.client is None:
            pinning = f"{os.cpu_count()} CPU(s) shared by server, clients and anything else running"
        else:
            where = f"wrk on CPU {sorted(cores.client)}" if args.client == "wrk" else "clients unpinned"
            pinning = f"server (and the raw baselines) on CPU {sorted(cores.server)}, {where}"
        print(
            f"client {args.client}: {args.clients} connections, {CANDIDATES} candidates per request, "
            f"{args.duration:.0f} s per scenario; {pinning}; load average {load_average()}"
        )
        tmp_path = Path(tmp)
        if "loc" in args.scenarios:
            loc_bodies = make_bodies(images, rng, 0.0)
            loc = run_scenario(
                "localization-only",
                {**common, "SPR_SCORER_SEMANTIC_MODEL": "none"},
                loc_bodies,
                args,
                cores,
                tmp_path,
            )
            raw_ms = raw_localization_cpu_ms(root, loc_bodies, args.duration / 2, cores)
            server_ms = loc["server_cpu_ms"]
            print(
                f"{'raw scoring':18s} CPU per request {raw_ms:.2f} ms (Scorer.plan + finish on the same "
                "bodies, in this process on the server's core)\n"
                f"{'':18s} fixed cost per request (server CPU - raw scoring): {server_ms - raw_ms:.2f} ms; "
                f"server CPU / raw scoring: {server_ms / raw_ms:.2f}"
            )
            print(
                f"localization-only: {loc['candidates_per_s']:.0f} candidates/s (aim >= 2000), server CPU "
                f"{loc['server_cpu_ms']:.2f} ms per request (aim <= 1 ms)"
            )
        if "clip" in args.scenarios:
            clip_bodies = make_bodies(images, rng, 0.8)
            clips = [("tiny-clip", models.clip)]
            if args.medium_clip:
                clips.append(("medium-clip", build_medium_clip(tmp_path / "medium-clip")))
            for name, folder in clips:
                env = {**common, "SPR_SCORER_SEMANTIC_MODEL": str(folder)}
                result = run_scenario(name, env, clip_bodies, args, cores, tmp_path)
                compare_with_raw(name, folder, root, clip_bodies, result, args, cores)
    return 0


def build_medium_clip(out: Path) -> Path:
    """A random CLIP about 20x the tiny one's compute per image (still far below ViT-L/14)."""
    from spr.shared.tiny import ClipSpec, build_clip

    spec = ClipSpec(
        text_hidden_size=256,
        text_intermediate_size=1024,
        text_num_hidden_layers=4,
        text_num_attention_heads=4,
        vision_hidden_size=384,
        vision_intermediate_size=1536,
        vision_num_hidden_layers=6,
        vision_num_attention_heads=6,
        image_size=224,
        patch_size=32,
        projection_dim=256,
    )
    return build_clip(out, seed=0, spec=spec)


if __name__ == "__main__":
    sys.exit(main())
